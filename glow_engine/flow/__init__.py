"""The GLOW normalizing flow: an exact bijection between an image and its latent."""

from glow_engine.flow.glow import Glow, GlowConfig

__all__ = ["Glow", "GlowConfig"]
