"""DP-GLOW engine: the flow, the privacy mechanisms, training, evaluation and release.

Qt-free by design: importable by the CLI, the viewer, tests and torchrun workers.
"""

__version__ = "0.1.0"
