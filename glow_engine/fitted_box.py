"""DP-GLOW's fitted clip boxes: one box per privacy budget, stored in the model file.

The published box is c_k +- alpha * Delta_k / 2, with Delta_k the min-max range of the training
latents: one statistic set by the most extreme training image, the same at every budget. A
fitted box is, per latent level l, the per-element quantile range [Q_p(l), Q_1-p(l)] of the
training latents, with the quantile p(l) chosen for each budget in a table (box_fitting.py
chooses it on training images). The box, the table and the budget are all public, so the
mechanism stays epsilon-LDP with the sensitivity equal to the box width ("fitted" mode,
docs/method.md).

A budget between the table's rows uses the row nearest in log e_px (ties: the smaller budget,
i.e. the narrower, noisier setting's box); e_px = inf uses the inf row, or the largest budget
where there is none.

In the model file: tensors `fitted_box.<i>.lower` / `.upper` (float32, N each) and the metadata
key "fitted_box" ({"rows": [{"e_px": "inf" | number, "quantiles": [p per level, finest
first]}], ...facts}), both covered by the model's content hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from glow_engine.budget import BudgetError, format_number, parse_e_px

__all__ = ["FittedBox", "FittedBoxError", "FittedBoxes"]

PREFIX = "fitted_box."
META_KEY = "fitted_box"


class FittedBoxError(ValueError):
    """A model file's fitted boxes that cannot be used (the message names what is wrong)."""


@dataclass(frozen=True, eq=False)
class FittedBox:
    """The box chosen for one budget: per-element [lower, upper] (float64, N)."""

    e_px: float
    quantiles: tuple[float, ...]  # per level, finest first
    lower: np.ndarray
    upper: np.ndarray

    @cached_property
    def width(self) -> np.ndarray:  # one array, so the mechanism's tensor cache holds it once
        return self.upper - self.lower

    def describe(self) -> str:
        """"quantiles 0.005/0.005/0.02/0.02/0 per level (finest first), fitted for e_px 100"."""
        q = "/".join(f"{p:g}" for p in self.quantiles)
        return (f"fitted box: quantiles {q} per level (finest first), chosen for "
                f"e_px {format_number(self.e_px)}")


@dataclass(frozen=True)
class FittedBoxes:
    rows: tuple[FittedBox, ...]  # sorted by e_px, inf last
    info: dict = field(default_factory=dict)  # how and on what they were fitted

    def __post_init__(self) -> None:
        if not self.rows:
            raise FittedBoxError("no fitted boxes")
        budgets = [r.e_px for r in self.rows]
        if budgets != sorted(budgets) or len(set(budgets)) != len(budgets):
            raise FittedBoxError("fitted boxes must have distinct budgets in increasing order")

    def for_budget(self, e_px: float) -> FittedBox:
        finite = [r for r in self.rows if math.isfinite(r.e_px)]
        if math.isinf(e_px) or not finite:
            return self.rows[-1]
        return min(finite, key=lambda r: (abs(math.log(r.e_px) - math.log(e_px)), r.e_px))

    # ------------------------------------------------------------------ model file form

    def to_file(self) -> tuple[dict[str, np.ndarray], dict]:
        tensors: dict[str, np.ndarray] = {}
        rows = []
        for i, row in enumerate(self.rows):
            tensors[f"{PREFIX}{i}.lower"] = row.lower.astype(np.float32)
            tensors[f"{PREFIX}{i}.upper"] = row.upper.astype(np.float32)
            rows.append({"e_px": format_number(row.e_px), "quantiles": list(row.quantiles)})
        return tensors, {**self.info, "rows": rows}

    @classmethod
    def from_file(cls, tensors: dict[str, np.ndarray], meta: dict | None, num_pixels: int,
                  levels: int) -> FittedBoxes | None:
        """The boxes stored in a model file, None where it has none (files written before
        fitted boxes); FittedBoxError for a half-written or inconsistent set."""
        names = {k for k in tensors if k.startswith(PREFIX)}
        if meta is None and not names:
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("rows"), list):
            raise FittedBoxError("its fitted boxes have no valid description")
        rows = [_row(i, spec, tensors, num_pixels, levels) for i, spec in enumerate(meta["rows"])]
        expected = {f"{PREFIX}{i}.{end}" for i in range(len(rows)) for end in ("lower", "upper")}
        if names != expected:
            raise FittedBoxError("its fitted box tensors do not match their description")
        info = {k: v for k, v in meta.items() if k != "rows"}
        return cls(tuple(rows), info)


def _row(i: int, spec: object, tensors: dict[str, np.ndarray], num_pixels: int,
         levels: int) -> FittedBox:
    try:
        e_px = parse_e_px(str(spec["e_px"]))  # type: ignore[index]
        quantiles = tuple(float(q) for q in spec["quantiles"])  # type: ignore[index]
        lower = tensors[f"{PREFIX}{i}.lower"].astype(np.float64)
        upper = tensors[f"{PREFIX}{i}.upper"].astype(np.float64)
    except (KeyError, TypeError, ValueError, BudgetError) as e:
        raise FittedBoxError(f"its fitted box {i} is incomplete ({e})") from None
    if len(quantiles) != levels or not all(0 <= q < 0.5 for q in quantiles):
        raise FittedBoxError(f"its fitted box {i} needs one quantile in [0, 0.5) per level")
    if lower.shape != (num_pixels,) or upper.shape != (num_pixels,):
        raise FittedBoxError(f"its fitted box {i} has the wrong size")
    if not (np.isfinite(lower).all() and np.isfinite(upper).all() and (upper > lower).all()):
        raise FittedBoxError(f"its fitted box {i} is not a valid box (non-finite, or empty)")
    return FittedBox(e_px, quantiles, lower, upper)
