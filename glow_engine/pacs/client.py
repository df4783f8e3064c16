"""One interface over both kinds of node: `open_client(node, local)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from glow_engine.pacs.dimse import DimseClient
from glow_engine.pacs.nodes import DimseNode, Local, Node
from glow_engine.pacs.query import Series, Study, StudyQuery
from glow_engine.pacs.web import WebClient

Received = Callable[[Path], None]


class PacsClient(Protocol):
    def echo(self) -> None: ...
    def find_studies(self, query: StudyQuery) -> list[Study]: ...
    def find_series(self, study_uid: str) -> list[Series]: ...
    def present(self, study_uid: str, series_uid: str) -> set[str]: ...
    def retrieve(self, series: Series, folder: Path, on_received: Received,
                 should_stop: Callable[[], bool]) -> None: ...
    def store(self, paths: list[Path], on_sent: Received,
              should_stop: Callable[[], bool]) -> None: ...


def open_client(node: Node, local: Local, timeout: float | None = None) -> PacsClient:
    """A client for `node`; `timeout` (seconds) overrides the node's own."""
    if timeout is not None:
        node = replace(node, timeout=timeout)
    if isinstance(node, DimseNode):
        return DimseClient(node, local)
    return WebClient(node)
