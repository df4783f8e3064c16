"""The one error of the PACS path: a one-line message naming the cause and the fix."""

from __future__ import annotations

from glow_engine.errors import UserError


class PacsError(UserError):
    """A node, a connection, a query, a retrieval or a transfer that cannot go on."""
