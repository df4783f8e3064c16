"""The PACS window's words for glow_engine.pacs's messages, which name the command line's
flags and the nodes file's keys: in the window the same fix is one of its own controls.
Qt-free; the labels here are the window's (app.qt.pacs_window uses them for its fields)."""

from __future__ import annotations

import re

# The nodes file's keys as the node form labels them.
KEY_LABELS = {"ae_title": "AE title", "host": "Host", "port": "Port", "url": "URL",
              "username": "User", "password_env": "Password variable",
              "token_env": "Token variable", "timeout": "Timeout (s)",
              "retrieve": "Retrieve by", "kind": "Kind"}
LOCAL_LABELS = {"ae_title": "Our AE title", "port": "Our storage port"}
EDIT = "(Edit node)"

# (pattern, the window's words), applied in order.
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"raise timeout (for this node )?in the nodes file( or --timeout)?",
     f"raise the node's 'Timeout (s)' {EDIT}"),
    (r"fix \[local\] ae_title in the nodes file", f"fix 'Our AE title' {EDIT}"),
    (r"change \[local\] port in the nodes file", f"change 'Our storage port' {EDIT}"),
    (r"fix ae_title of node (\S+) in the nodes file", rf"fix the 'AE title' of node \1 {EDIT}"),
    (r"check host in the nodes file", f"check the node's 'Host' {EDIT}"),
    (r"check url in the nodes file", f"check the node's 'URL' {EDIT}"),
    (r"check username and password_env \(or token_env\) for this node in the nodes file",
     f"check the node's 'User' and 'Password variable' {EDIT}"),
    (r"keep the ledger \(or --staging\) outside it", "choose a 'Privacy ledger' outside it"),
    (r"give --staging DIR", "choose a 'Privacy ledger' in another folder (the staging "
                            "folder is made beside it)"),
    (r"with 'dpglow pacs find'", "with 'Find'"),
    (r"is port (\d+) right\?", rf"is the node's 'Port' (\1) right? {EDIT}"),
    (r"check host and port,", f"check the node's 'Host' and 'Port' {EDIT},"),
    (r"write one \(README: 'PACS'\) or give --nodes FILE",
     "add a node ('Add node') or choose the file in 'Nodes file'"),
    (r"add a \[nodes\.[^\]]+\] table", "add it ('Add node') or choose another source node"),
    (r"\blocal\.(ae_title|port)\b", lambda m: f"'{LOCAL_LABELS[m.group(1)]}'"),
    (r"\bnodes\.([\w-]+)\.(\w+)\b",
     lambda m: f"'{KEY_LABELS.get(m.group(2), m.group(2))}' of node {m.group(1)}"),
)


def window_words(message: str) -> str:
    """`message` with every command-line flag and nodes-file key replaced by the control
    that fixes it in the PACS window; one line."""
    for pattern, words in _PHRASES:
        message = re.sub(pattern, words, message)
    return " ".join(message.split())
