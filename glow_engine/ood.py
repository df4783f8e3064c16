"""Is this picture a frontal chest X-ray like the model's training images? The out-of-
distribution (OOD) check.

A flow's likelihood alone cannot answer that. It gives *higher* likelihood to simpler pictures
(a smooth gradient scores ~1 bit/dim, a real chest ~3), so a one-sided bits/dim limit passes
photographs, textures and gradients; and it barely moves when a chest is inverted or turned,
because local pixel statistics dominate it. The check therefore asks three questions, each
fitted on the model's own training images when the model is calibrated (calibration.py):

1. **Typicality**, two-sided and complexity-aware: each flow level's share of bits/dim (fine
   texture at the first level, anatomy at the coarse ones) and the PNG bits per pixel of the
   same 8-bit image (a generic compressor's measure of how complex the picture is) form a
   feature vector; its Mahalanobis distance from the training images' mean is compared with
   the 99.5th percentile of the training images' own distances. Too simple is as atypical as
   too complex, and a picture whose complexity the compressor explains is not mistaken for a
   well-modelled chest.
2. **Orientation and polarity**: a linear classifier on the 32x32 thumbnail, trained on the
   calibration images and their inverted and rotated copies, says upright, inverted (e.g. a
   MONOCHROME1 file shown without inversion) or turned by 90, 180 or 270 degrees. Left-right
   flips are not flagged: laterality varies (dextrocardia, AP/PA) and is a finding.
3. **Colour**: the loader says whether the source's colour channels differed (the flow sees
   the grey luma only).

The privacy guarantee holds for any input; what an OOD flag withdraws is the utility and the
anomaly score, which are measured on chest X-rays only.
"""

from __future__ import annotations

import enum
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from glow_engine.bits import bits_per_pixel

__all__ = ["ORIENTATIONS", "OODReason", "OODReference", "OODVerdict", "check",
           "fit_reference", "png_bits_per_pixel", "thumbnails", "typicality_features"]

THUMB = 32  # thumbnail side for the orientation classifier
ORIENTATIONS = ("upright", "inverted", "turned 90°", "turned 180°", "turned 270°")
TYPICALITY_QUANTILE = 99.5  # percentile of the training images' distances: the limit
# Orientation means something only for a picture near the chest X-rays; a gradient's or a
# text page's "orientation" is noise, so it is reported within this many limits only.
ORIENTATION_RANGE = 2.0
_PREFIX = "ood."
_MAX_LEVEL_BITS = 1e30  # bits per pixel: its square times a precision stays far below 1e308


class OODReason(enum.StrEnum):
    COLOUR = "colour"
    INVERTED = "inverted"
    TURNED = "turned"
    TOO_SIMPLE = "too_simple"
    ATYPICAL = "atypical"

    @property
    def label(self) -> str:
        return {
            OODReason.COLOUR: "a colour image (the model sees its grey luma only)",
            OODReason.INVERTED: "looks inverted (bright lungs): a MONOCHROME1 image shown "
                                "without inversion, or a negative",
            OODReason.TURNED: "looks turned (not an upright frontal chest)",
            OODReason.TOO_SIMPLE: "far simpler than any chest X-ray the model was trained on "
                                  "(a gradient, a drawing, a blank or cropped region?)",
            OODReason.ATYPICAL: "unlike the chest X-rays the model was trained on "
                                "(a photo, a texture, another body part or modality?)",
        }[self]

    @property
    def short(self) -> str:
        """The finding without the guesses at what the input is (for privatised images, whose
        cause is known: the mechanism changed them)."""
        return {
            OODReason.COLOUR: "colour",
            OODReason.INVERTED: "looks inverted",
            OODReason.TURNED: "looks turned",
            OODReason.TOO_SIMPLE: "far simpler than the training X-rays",
            OODReason.ATYPICAL: "unlike the training X-rays",
        }[self]


@dataclass(frozen=True)
class OODVerdict:
    distance: float  # typicality distance (Mahalanobis, training units)
    limit: float  # its limit: the training images' 99.5th percentile
    orientation: str  # one of ORIENTATIONS
    reasons: tuple[OODReason, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def describe(self) -> str:
        if not self.reasons:
            return "in distribution: like the model's training chest X-rays"
        return "; ".join(r.label for r in self.reasons)


@dataclass(frozen=True, eq=False)
class OODReference:
    """What the check compares with, fitted on the calibration images; stored in the model
    file as plain tensors (`ood.*`) beside the calibration."""

    mean: np.ndarray  # (k,) typicality features' mean
    precision: np.ndarray  # (k, k) inverse covariance
    limit: float
    orient_weight: np.ndarray  # (len(ORIENTATIONS), THUMB * THUMB)
    orient_bias: np.ndarray  # (len(ORIENTATIONS),)

    def tensors(self) -> dict[str, np.ndarray]:
        return {f"{_PREFIX}mean": self.mean, f"{_PREFIX}precision": self.precision,
                f"{_PREFIX}limit": np.array([self.limit]),
                f"{_PREFIX}orient_weight": self.orient_weight,
                f"{_PREFIX}orient_bias": self.orient_bias}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> OODReference | None:
        """The reference from a model file's tensors; None when it has none (older files).
        Raises ValueError when it is there but malformed."""
        names = [n for n in tensors if n.startswith(_PREFIX)]
        if not names:
            return None
        t = {n[len(_PREFIX):]: np.asarray(tensors[n], dtype=np.float64) for n in names}
        try:
            ref = cls(t["mean"], t["precision"], float(t["limit"][0]), t["orient_weight"],
                      t["orient_bias"])
        except (KeyError, IndexError):
            raise ValueError("its out-of-distribution reference is incomplete") from None
        k = ref.mean.shape[0]
        shapes_ok = (ref.mean.shape == (k,) and ref.precision.shape == (k, k)
                     and ref.orient_weight.shape == (len(ORIENTATIONS), THUMB * THUMB)
                     and ref.orient_bias.shape == (len(ORIENTATIONS),))
        if not shapes_ok or not all(np.isfinite(v).all() for v in t.values()):
            raise ValueError("its out-of-distribution reference is malformed")
        return ref


def png_bits_per_pixel(pixels: np.ndarray) -> np.ndarray:
    """(B, H, W) [0, 1] -> the PNG (zlib, level 9) size of each 8-bit image in bits per pixel."""
    out = []
    for p in np.asarray(pixels):
        buf = io.BytesIO()
        Image.fromarray(np.round(np.clip(p, 0, 1) * 255).astype(np.uint8)).save(
            buf, format="PNG", compress_level=9)
        out.append(8 * len(buf.getvalue()) / p.size)
    return np.asarray(out)


def typicality_features(level_log_p: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Each level's share of log p (B, L nats, finest first) and the images (B, R, R) ->
    (B, L + 1): per-level bits per pixel (negated shares) and the PNG bits per pixel."""
    level_log_p = np.asarray(level_log_p, dtype=np.float64)
    per_level = -bits_per_pixel(level_log_p, np.asarray(pixels)[0].size)
    # A picture the flow cannot explain has shares of 1e25 nats or more (flow.glow explains
    # why), or NaN where the flow broke; capped, and NaN counted as unexplained, its distance
    # stays finite and far above the limit instead of a NaN that no comparison flags.
    per_level = np.clip(np.where(np.isnan(per_level), _MAX_LEVEL_BITS, per_level),
                        -_MAX_LEVEL_BITS, _MAX_LEVEL_BITS)
    return np.column_stack([per_level, png_bits_per_pixel(pixels)])


def thumbnails(pixels: np.ndarray) -> np.ndarray:
    """(B, R, R) -> (B, THUMB * THUMB): area-averaged thumbnails, each standardised (zero mean,
    unit variance), so that inverting an image negates its thumbnail."""
    p = np.asarray(pixels, dtype=np.float64)
    b, r = p.shape[0], p.shape[1]
    if r % THUMB:
        raise ValueError(f"image side {r} is not a multiple of {THUMB}")
    f = r // THUMB
    t = p.reshape(b, THUMB, f, THUMB, f).mean(axis=(2, 4)).reshape(b, -1)
    t = t - t.mean(axis=1, keepdims=True)
    return t / np.maximum(t.std(axis=1, keepdims=True), 1e-6)


def _orientation_set(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training thumbnails in every orientation, labelled by ORIENTATIONS' index. Upright
    includes left-right mirror images (a flip is not an error)."""
    sq = thumbs.reshape(-1, THUMB, THUMB)
    variants = [
        (np.concatenate([sq, sq[:, :, ::-1]]), 0),
        (-sq, 1),
        (np.rot90(sq, 1, axes=(1, 2)), 2),
        (np.rot90(sq, 2, axes=(1, 2)), 3),
        (np.rot90(sq, 3, axes=(1, 2)), 4),
    ]
    x = np.concatenate([v.reshape(len(v), -1) for v, _ in variants])
    y = np.concatenate([np.full(len(v), label) for v, label in variants])
    return x, y


def _fit_orientation(thumbs: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS in float64 (deterministic)."""
    import torch  # only calibration fits; checking needs NumPy alone

    x_np, y_np = _orientation_set(thumbs)
    with torch.inference_mode(False), torch.enable_grad():  # calibration runs without grad
        x, y = torch.from_numpy(x_np.astype(np.float64)), torch.from_numpy(y_np).long()
        w = torch.zeros(len(ORIENTATIONS), x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(ORIENTATIONS), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            opt.zero_grad()
            value = torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2 * w.square().sum()
            value.backward()
            return value

        opt.step(loss)
    return w.detach().numpy(), b.detach().numpy()


def _distance(ref_mean: np.ndarray, precision: np.ndarray, features: np.ndarray) -> np.ndarray:
    d = np.asarray(features, dtype=np.float64) - ref_mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, precision, d), 0.0))


def fit_reference(features: np.ndarray, thumbs: np.ndarray) -> OODReference:
    """The reference from the calibration images' typicality features and thumbnails."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2 * features.shape[1] + 2:
        raise ValueError(f"{len(features)} images are too few to fit the out-of-distribution "
                         "reference")
    mean = features.mean(axis=0)
    cov = np.cov(features.T)
    cov += np.eye(len(mean)) * 1e-9 * np.trace(cov)  # a constant feature must not break it
    precision = np.linalg.inv(cov)
    limit = float(np.percentile(_distance(mean, precision, features), TYPICALITY_QUANTILE))
    w, b = _fit_orientation(thumbs)
    return OODReference(mean, precision, limit, w, b)


def check(ref: OODReference, features: np.ndarray, thumbs: np.ndarray,
          colour: np.ndarray | None = None) -> list[OODVerdict]:
    """One verdict per image. `colour` (B,) bool: the source had colour."""
    dist = _distance(ref.mean, ref.precision, features)
    orient = np.argmax(np.asarray(thumbs) @ ref.orient_weight.T + ref.orient_bias, axis=1)
    # the total bits/dim minus its training mean says which side of typical an image is on
    simpler = np.asarray(features)[:, :-1].sum(axis=1) < ref.mean[:-1].sum()
    colour = np.zeros(len(dist), bool) if colour is None else np.asarray(colour, bool)
    verdicts = []
    for d, o, s, c in zip(dist, orient, simpler, colour, strict=True):
        reasons = [OODReason.COLOUR] if c else []
        if o and d <= ORIENTATION_RANGE * ref.limit:
            reasons.append(OODReason.INVERTED if o == 1 else OODReason.TURNED)
        if d > ref.limit:
            reasons.append(OODReason.TOO_SIMPLE if s else OODReason.ATYPICAL)
        verdicts.append(OODVerdict(float(d), ref.limit, ORIENTATIONS[o], tuple(reasons)))
    return verdicts
