"""The DP-GLOW desktop viewer: the only package that imports Qt.

``state`` and ``session`` are Qt-free (tests drive them directly); ``worker`` runs the session
on one long-lived QThread; the widgets are thin views over the state.
"""
