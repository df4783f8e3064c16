"""Local-DP image mechanisms (DP-GLOW, ID-LDP, DP-Pix) behind one interface (see base.Mechanism).

A new mechanism is its description in glow_engine.mechanism_specs and one module with a
Mechanism subclass that sets `name`, imported here.
"""

from glow_engine.budget import BudgetError
from glow_engine.mechanisms.base import Encoded, Mechanism, create_mechanism
from glow_engine.mechanisms.box import GRID_BITS, NonFiniteOutputError
from glow_engine.mechanisms.dpglow import DPGlow
from glow_engine.mechanisms.dppix import DPPix
from glow_engine.mechanisms.idldp import IDLDP
from glow_engine.mechanisms.noise import preview_noise

__all__ = [
    "GRID_BITS",
    "IDLDP",
    "BudgetError",
    "DPGlow",
    "DPPix",
    "Encoded",
    "Mechanism",
    "NonFiniteOutputError",
    "create_mechanism",
    "preview_noise",
]
