"""Which pane: a typed key, and the pane's labels. Qt-free.

Every image the window shows is named by a :class:`PaneKey`: the original, a mechanism's main
pane (at the slider's budget) or one of its strip panes (at a fixed budget). The engine names
its results by the same values the panes are built from, so a result can never miss its pane
through two spellings of one budget; no key is ever parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

from glow_engine.mechanism_specs import MECHANISM_SPECS, title_of

MECHANISMS = tuple(MECHANISM_SPECS)  # every privatised pane, in the registry's order
STRIP_BUDGETS = (1000.0, 100.0, 10.0)  # the strip's fixed budgets: the paper's figures
_ORIGINAL = "original"


@dataclass(frozen=True)
class PaneKey:
    mechanism: str  # a registered mechanism, or "original"
    e_px: float | None = None  # a strip pane's fixed budget; None: the main row's

    @property
    def original(self) -> bool:
        return self.mechanism == _ORIGINAL

    @property
    def in_strip(self) -> bool:
        return self.e_px is not None

    @property
    def title(self) -> str:
        """"Original", "DP-GLOW": what the pane shows, without its budget."""
        return "Original" if self.original else title_of(self.mechanism)

    @property
    def budget(self) -> str:
        """"1000" for a strip pane, "" for the main row."""
        return "" if self.e_px is None else f"{self.e_px:g}"

    @property
    def label(self) -> str:
        """"DP-GLOW · 100": a table row or legend entry."""
        return f"{self.title} · {self.budget}" if self.in_strip else self.title

    @property
    def short(self) -> str:
        """"orig", "DP-GLOW@100": the status bar's compact list."""
        if self.original:
            return "orig"
        return self.title + (f"@{self.budget}" if self.in_strip else "")

    def pending_title(self, models_loaded: bool) -> str:
        """Over a pane whose image is on its way: a main pane names its mechanism, a strip
        pane its budget (its group's title names the mechanism)."""
        title = f"ε/px {self.budget}" if self.in_strip else self.title
        return f"{title}  (computing…)" if models_loaded else title

    def __str__(self) -> str:
        return self.mechanism + (f"@{self.budget}" if self.in_strip else "")


ORIGINAL = PaneKey(_ORIGINAL)
MECHANISM_KEYS = tuple(PaneKey(m) for m in MECHANISMS)  # the main row's privatised panes
MAIN_KEYS = (ORIGINAL, *MECHANISM_KEYS)
STRIP_KEYS = tuple(PaneKey(m, e) for m in MECHANISMS for e in STRIP_BUDGETS)
