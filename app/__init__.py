"""The DP-GLOW desktop viewer: the only package that imports Qt, and only in ``app.qt``.

``app.core`` (view state, messages, events, scheduling) and ``app.engine`` (the session that
drives glow_engine) are Qt-free, and tests drive them directly; ``app.qt`` holds the windows,
the widgets and the worker that runs the session on a long-lived QThread. The contracts in
pyproject.toml keep the three apart (docs/architecture.md).
"""
