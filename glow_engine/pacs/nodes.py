"""The nodes file: who we are on the network and which PACS we talk to (TOML).

    [local]
    ae_title = "DPGLOW"          # our AE title (calling AE; the C-MOVE destination)
    port = 11112                 # our storage SCP's port, for C-MOVE only

    [nodes.hospital]
    kind = "dimse"
    ae_title = "PACS"            # the called AE title
    host = "pacs.example.org"
    port = 104
    retrieve = "get"             # or "move" (into our storage SCP)
    timeout = 30                 # seconds: connection, association and each DIMSE message
    tls = { ca_file = "ca.pem", cert_file = "me.pem", key_file = "me.key" }  # optional

    [nodes.research]
    kind = "dicomweb"
    url = "https://research.example.org/dicom-web"
    username = "officer"         # optional HTTP basic authentication...
    password_env = "RESEARCH_PASSWORD"  # ...its password from this environment variable
    # or: token_env = "RESEARCH_TOKEN" (a bearer token); ca_file = "ca.pem"

Every mistake is one `PacsError` naming the file, the key and its line (`read_nodes_text`
checks a text the same way, e.g. an edit before it is saved). Environment variables named by
`password_env` / `token_env` are read only when a client is made (`WebNode.secrets`), so the
file holds their names, not the secrets.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from glow_engine.pacs.errors import PacsError
from glow_engine.reading import MiB, ReadError, read_text

DEFAULT_TIMEOUT = 30.0
RETRIEVE_MODES = ("get", "move")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash


@dataclass(frozen=True)
class Local:
    ae_title: str = "DPGLOW"
    port: int = 11112


@dataclass(frozen=True)
class Tls:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class DimseNode:
    name: str
    ae_title: str
    host: str
    port: int
    retrieve: str = "get"
    timeout: float = DEFAULT_TIMEOUT
    tls: Tls | None = None

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class WebNode:
    name: str
    url: str
    username: str = ""
    password: str = ""  # written in the file itself (password_env is the better place)
    password_env: str = ""  # the environment variable holding the password
    token_env: str = ""  # the environment variable holding a bearer token
    ca_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def address(self) -> str:
        return self.url

    def secrets(self) -> tuple[str, str]:
        """(password, token) from the file and the environment; PacsError if a variable the
        node names is not set."""
        for var in (self.password_env, self.token_env):
            if var and var not in os.environ:
                raise PacsError(f"node {self.name}: the environment variable ${var} (named by "
                                "its password_env or token_env) is not set: set it, or change "
                                "the nodes file")
        return (os.environ[self.password_env] if self.password_env else self.password,
                os.environ[self.token_env] if self.token_env else "")


Node = DimseNode | WebNode


@dataclass(frozen=True)
class Nodes:
    local: Local
    nodes: dict[str, Node]
    path: Path

    def get(self, name: str) -> Node:
        if name not in self.nodes:
            known = ", ".join(sorted(self.nodes)) or "none"
            raise PacsError(f"no node named {name!r} in {self.path} (known: {known}); add a "
                            f"[nodes.{name}] table")
        return self.nodes[name]


def default_nodes_path() -> Path:
    """$DPGLOW_NODES, else ~/.config/dp-glow/nodes.toml ($XDG_CONFIG_HOME respected)."""
    if env := os.environ.get("DPGLOW_NODES"):
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "dp-glow" / "nodes.toml"


def load_nodes(path: Path | None = None) -> Nodes:
    path = path or default_nodes_path()
    try:
        if not path.exists():
            raise PacsError(f"no nodes file at {path}: write one (README: 'PACS') or give "
                            "--nodes FILE")
        text = read_text(path, what="nodes file", limit=MiB)  # guarded: never a named pipe
    except ReadError as e:
        raise PacsError(str(e)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PacsError(f"cannot read the nodes file {path}: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    return read_nodes_text(path, text)


def read_nodes_text(path: Path, text: str) -> Nodes:
    """Check `text` as the nodes file `path` (also a new text before it is written)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PacsError(f"{path}: not valid TOML: {e}") from None
    return _Reader(path, text).nodes(data)


class _Reader:
    """Checks the parsed tables, naming the key and its line in every complaint."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines = path, text.splitlines()

    def nodes(self, data: dict) -> Nodes:
        self._only(data, "", {"local", "nodes"})
        local_table = self._table(data, "local")
        self._only(local_table, "local", {"ae_title", "port"})
        local = Local(self._ae(local_table, "local", "ae_title", "DPGLOW"),
                      self._port(local_table, "local", "port", 11112))
        nodes: dict[str, Node] = {}
        for name, table in self._table(data, "nodes").items():
            where = f"nodes.{name}"
            if not isinstance(table, dict):
                self._fail(where, None, "must be a table ([nodes.NAME])")
            nodes[name] = self._node(name, table, where)
        return Nodes(local, nodes, self.path)

    def _node(self, name: str, t: dict, where: str) -> Node:
        kind = self._str(t, where, "kind", None)
        timeout = self._number(t, where, "timeout", DEFAULT_TIMEOUT)
        if kind == "dimse":
            self._only(t, where, {"kind", "ae_title", "host", "port", "retrieve", "timeout",
                                  "tls"})
            retrieve = self._str(t, where, "retrieve", "get")
            if retrieve not in RETRIEVE_MODES:
                self._fail(where, "retrieve", f"must be \"get\" or \"move\", not {retrieve!r}")
            return DimseNode(name, self._ae(t, where, "ae_title", None),
                             self._str(t, where, "host", None),
                             self._port(t, where, "port", None), retrieve, timeout,
                             self._tls(t, where))
        if kind == "dicomweb":
            self._only(t, where, {"kind", "url", "username", "password", "password_env",
                                  "token_env", "ca_file", "timeout"})
            url = self._str(t, where, "url", None)
            if not re.match(r"^https?://[^/\s]+", url):
                self._fail(where, "url", f"must be an http:// or https:// address, not {url!r}")
            return WebNode(name, url.rstrip("/"), *(self._str(t, where, key, "") for key in (
                "username", "password", "password_env", "token_env")),
                self._file(t, where, "ca_file"), timeout)
        self._fail(where, "kind", f"must be \"dimse\" or \"dicomweb\", not {kind!r}")

    def _tls(self, t: dict, where: str) -> Tls | None:
        if "tls" not in t:
            return None
        table = self._table(t, "tls", where)
        self._only(table, f"{where}.tls", {"ca_file", "cert_file", "key_file"})
        return Tls(*(self._file(table, f"{where}.tls", k)
                     for k in ("ca_file", "cert_file", "key_file")))

    # ------------------------------------------------------------------ values

    def _table(self, t: dict, key: str, where: str = "") -> dict:
        value = t.get(key, {})
        if not isinstance(value, dict):
            self._fail(where, key, "must be a table")
        return value

    def _only(self, t: dict, where: str, allowed: set[str]) -> None:
        for key in t:
            if key not in allowed:
                self._fail(where, key, f"is not a known key (known: {', '.join(sorted(allowed))})")

    def _str(self, t: dict, where: str, key: str, default: str | None) -> str:
        value = t.get(key, default)
        if value is None:
            self._fail(where, key, "is missing", missing=True)
        if not isinstance(value, str) or (not value.strip() and default is None):
            self._fail(where, key, f"must be a non-empty string, not {value!r}")
        return value

    def _ae(self, t: dict, where: str, key: str, default: str | None) -> str:
        value = self._str(t, where, key, default)
        if not _AE_TITLE.match(value) or not value.strip():
            self._fail(where, key, f"must be an AE title of 1 to 16 printable characters, "
                                   f"not {value!r}")
        return value

    def _port(self, t: dict, where: str, key: str, default: int | None) -> int:
        value = t.get(key, default)
        if value is None:
            self._fail(where, key, "is missing", missing=True)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
            self._fail(where, key, f"must be a port number 1..65535, not {value!r}")
        return value

    def _number(self, t: dict, where: str, key: str, default: float) -> float:
        value = t.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e5:
            self._fail(where, key, f"must be a number of seconds above 0, not {value!r}")
        return float(value)

    def _file(self, t: dict, where: str, key: str) -> Path | None:
        if key not in t:
            return None
        path = Path(self._str(t, where, key, None)).expanduser()
        if not path.is_absolute():
            path = self.path.parent / path  # relative to the nodes file
        if not path.is_file():
            self._fail(where, key, f"names {path}, which is not a file")
        return path

    def _fail(self, where: str, key: str | None, problem: str, *,
              missing: bool = False) -> NoReturn:
        name = ".".join(p for p in (where, key) if p)
        line = self._line(where, None if missing else key)
        at = f" (line {line})" if line else ""
        raise PacsError(f"{self.path}{at}: {name} {problem}")

    def _line(self, where: str, key: str | None) -> int | None:
        """The line of `key` in table `where` (or of the table's header)."""
        header = re.compile(r"^\s*\[\s*" + re.escape(where).replace(r"\.", r"\s*\.\s*")
                            + r"\s*\]") if where else None
        inside, found = header is None, None
        for number, line in enumerate(self.lines, 1):
            if re.match(r"^\s*\[", line):
                inside = bool(header and header.match(line))
                if inside:
                    found = found or number
                continue
            if inside and key and re.match(r"^\s*" + re.escape(key) + r"\s*=", line):
                return number
        return found
