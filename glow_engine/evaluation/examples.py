"""Example grids like the paper's Figures 2-7: rows = images (a normal, an abnormal, one with
the block marker, one flipped), columns = the original and each privacy budget.

Two sources. *Real*: the evaluated images; these pictures are derived from the data, so they
are written to the evaluation's output folder only and must never be committed (the data's
README forbids it). *Synthetic*: images sampled from the mixture model itself (temperature
0.7), privatised the same way; they show no patient and may go into docs/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glow_engine.atomic import write_atomic
from glow_engine.evaluation import checks
from glow_engine.evaluation.settings import Setting, build_mechanism
from glow_engine.flow.glow import model_to_pixels
from glow_engine.mechanisms import preview_noise
from glow_engine.mechanisms.dppix import DEFAULT_BLOCK
from glow_engine.modelfile import LoadedModel
from glow_engine.overlays import BlockMarker

ROW_NAMES = ("normal", "abnormal", "with marker", "flipped")
SYNTHETIC_ROW_NAMES = ("sample 1", "sample 2", "sample 1 + marker", "sample 2 flipped")
N_PLAIN = 2


def pick(labels: np.ndarray) -> np.ndarray:
    """First normal and first abnormal image (the first images when unlabelled)."""
    picks = [int(np.flatnonzero(labels == v)[0]) for v in (0, 1) if (labels == v).any()]
    picks += [i for i in range(len(labels)) if i not in picks]
    return np.array(picks[:N_PLAIN])


def rows(plain: np.ndarray, marked: np.ndarray, flipped: np.ndarray,
         chosen: np.ndarray) -> np.ndarray:
    """The grid's rows from one run: the chosen plain images, then the first image of the
    marker check with its marker and the second image of the flip check, flipped."""
    return np.stack([plain[i] for i in chosen] + [marked[0], flipped[min(1, len(flipped) - 1)]])


def save(path: Path, images: np.ndarray, fingerprint: str = "") -> None:
    """[0, 1] images as an 8-bit .npz, written atomically, tagged with `fingerprint`."""
    u8 = np.rint(images * 255).astype(np.uint8)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez_compressed(f, images=u8, fingerprint=np.array(fingerprint))

    write_atomic(path, write, overwrite=True)


def load(path: Path, fingerprint: str | None = None) -> np.ndarray | None:
    """The images saved in `path` ([0, 1] float32); with `fingerprint`, None unless the file
    exists, is readable and carries that fingerprint."""
    try:
        with np.load(path) as z:
            if fingerprint is not None and str(z["fingerprint"]) != fingerprint:
                return None
            return z["images"].astype(np.float32) / 255
    except (OSError, ValueError, KeyError):
        if fingerprint is None:
            raise
        return None


@torch.inference_mode()
def synthetic_originals(mixture: LoadedModel, marker: BlockMarker, seed: int) -> np.ndarray:
    """Two model samples plus the first with the marker and the second flipped."""
    gen = torch.Generator().manual_seed(seed)
    samples = model_to_pixels(mixture.flow.sample(N_PLAIN, 0.7, gen))[:, 0].cpu().numpy()
    samples = samples.astype(np.float32)
    return rows(samples, checks.marked(samples[:1], marker), checks.flipped(samples),
                np.arange(N_PLAIN))


def synthetic_grids(mixture: LoadedModel, mechanisms: list[str], settings: list[Setting],
                    alpha: float, marker: BlockMarker, seed: int,
                    block: int = DEFAULT_BLOCK) -> tuple[np.ndarray, dict]:
    """(originals (rows, R, R), {mechanism: (rows, settings, R, R)}) for the synthetic grid."""
    originals = synthetic_originals(mixture, marker, seed)
    r = mixture.resolution
    noise = preview_noise(len(originals), r * r, seed)
    grids = {}
    for key in mechanisms:
        mech = build_mechanism(key, mixture, alpha, block)
        enc = mech.encode(originals)
        grids[key] = np.stack([mech.preview(enc, s.e_px, noise, clip=s.clip) for s in settings],
                              axis=1)
    return originals, grids
