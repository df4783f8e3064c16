"""The interface every privacy mechanism offers to the viewer, the CLI and the evaluation.

A mechanism splits privatisation into a deterministic, noise-free `encode` (done once per
image) and a cheap randomised part: `preview` (smooth, seedable, for the slider) or `release`
(exact discrete Laplace from the OS CSPRNG, for anything written out). The per-pixel budget
`e_px` is the slider axis; the image's total epsilon is glow_engine.budget.total_epsilon.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from glow_engine.budget import check_e_px
from glow_engine.mechanism_specs import MechanismSpec, spec_of
from glow_engine.modelfile import LoadedModel


@dataclass(frozen=True, eq=False)
class Encoded:
    """The noise-free part of privatising a batch of images, kept between slider moves.

    Both tensors are (B, N) float32 on the mechanism's device, N = R * R.
    """

    clipped: torch.Tensor  # inside the clip box: the mechanism's private input
    raw: torch.Tensor  # before the clip (for "inf without clip"); non-finite -> box centre
    nonfinite: int  # how many latent elements were non-finite and replaced
    batched: bool  # whether the caller passed (B, R, R) rather than (R, R)

    @property
    def batch(self) -> int:
        return self.clipped.shape[0]


class Mechanism(ABC):
    """One local-DP image mechanism. Subclasses set `name` (a registry key, described in
    glow_engine.mechanism_specs), and `label` and `mode` from that description."""

    name: ClassVar[str]
    label: str
    resolution: int
    mode: str = ""  # a variant name where the mechanism has several (DP-GLOW: paper/tight)
    model_sha256: str = ""  # the model the output depends on, if any
    # The mixture model it works with (DP-GLOW) or was sized by (None: a resolution alone):
    # its pair's risk card describes the releases (glow_engine.model_pair).
    model: LoadedModel | None = None
    registry: ClassVar[dict[str, type[Mechanism]]] = {}

    @property
    def spec(self) -> MechanismSpec:
        return spec_of(self.name)

    @property
    def title(self) -> str:
        """The name people know the mechanism by ("DP-GLOW")."""
        return self.spec.title

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # concrete mechanisms register themselves by name
            spec_of(cls.name)  # a mechanism without a description is a bug: fail on import
            Mechanism.registry[cls.name] = cls

    @classmethod
    @abstractmethod
    def from_options(cls, model: Any, **options: Any) -> Mechanism:
        """Build from a LoadedModel (or None where unused) and options: those of its
        description (defaulted there), and `resolution` for a mechanism without a model."""

    @abstractmethod
    def encode(self, pixels: np.ndarray) -> Encoded:
        """float32 (R, R) or (B, R, R) in [0, 1] -> the deterministic, noise-free part."""

    @abstractmethod
    def preview(self, enc: Encoded, e_px: float, unit_noise: torch.Tensor, *,
                clip: bool = True) -> np.ndarray:
        """Fast picture for the slider: `unit_noise` (B, R*R, standard Laplace) scaled."""

    @abstractmethod
    def release(self, enc: Encoded, e_px: float, *, clip: bool = True) -> np.ndarray:
        """The image to write out: exact discrete Laplace noise from the OS CSPRNG."""

    def check_budget(self, e_px: float) -> None:
        """BudgetError unless `release` can run at `e_px` (before anything is spent)."""
        check_e_px(e_px)

    @abstractmethod
    def noise_scale(self, e_px: float) -> float:
        """Mean Laplace scale b in the mechanism's own units, for display."""

    @abstractmethod
    def describe(self, e_px: float, clip: bool = True) -> str:
        """One line naming mechanism, parameters, budget and model, for files and manifests."""


def create_mechanism(name: str, model: Any = None, **options: Any) -> Mechanism:
    """The mechanism registered under `name` ("dpglow", "idldp", ...); UserError for a name
    without a description (glow_engine.mechanism_specs)."""
    spec_of(name)
    return Mechanism.registry[name].from_options(model, **options)
