"""Editing the nodes file from the window: add or change one node, or our own [local] table.

tomlkit edits the document in place, so the officer's comments, key order and the keys the
window does not show (TLS files, a password kept in the file) survive. The new text is
checked by the same reader as every command (`load_nodes`) before it replaces the file, and
it replaces it atomically: a bad edit is one `PacsError` and the file is left as it was.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from glow_engine.atomic import write_text_atomic
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import Nodes, read_nodes_text

# Keys the window never shows or sends back: a password kept in the file stays there.
SECRET_KEYS = frozenset({"password"})


def node_tables(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The [local] table and each node's table as written in the file, secrets left out
    (for the window's forms; `load_nodes` has checked the file first)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    nodes = {name: {k: v for k, v in table.items() if k not in SECRET_KEYS}
             for name, table in data.get("nodes", {}).items()}
    return dict(data.get("local", {})), nodes


def save_node(path: Path, name: str, values: dict[str, Any], *, old_name: str | None = None,
              local: dict[str, Any] | None = None) -> Nodes:
    """Set node `name`'s keys to `values` (a key set to None is removed; a renamed node keeps
    its other keys), and [local]'s to `local`; the file is made if there is none."""
    if not name.strip() or any(c in name for c in ".[]\"'\n"):
        raise PacsError(f"node name {name!r}: use letters, digits, '-' or '_'")
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() \
            else tomlkit.document()
    except (OSError, UnicodeDecodeError, TOMLKitError) as e:
        raise PacsError(f"cannot read the nodes file {path}: {e}") from None
    nodes = doc.setdefault("nodes", tomlkit.table(is_super_table=True))
    if old_name is not None and old_name != name and old_name in nodes:
        table = nodes.pop(old_name)
    else:
        table = nodes.get(name, tomlkit.table())
    if name in nodes and old_name != name:
        raise PacsError(f"a node named {name!r} is already in {path}: choose another name")
    _update(table, values)
    nodes[name] = table
    if local:
        _update(doc.setdefault("local", tomlkit.table()), local)
    text = tomlkit.dumps(doc)
    checked = read_nodes_text(path, text)  # raises before anything is written
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text, overwrite=True)
    except OSError as e:
        raise PacsError(f"cannot write the nodes file {path}: {e.strerror or e}") from None
    return checked


def _update(table: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
