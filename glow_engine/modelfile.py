"""Model files: safetensors weights + JSON metadata, bound together by a content hash.

A model is either a directory holding `weights.safetensors` and `model.json`, or a single
`.safetensors` file whose header metadata carries the same JSON under the key "dpglow".
Loading never unpickles. The hash (sha256) covers every tensor's name, dtype, shape and bytes
plus the canonical JSON of the metadata without the hash itself, so a changed weight, a changed
calibration vector or an edited card field is detected alike.

Tensors stored besides the flow's state_dict (prefixed "flow."):
  calibration.min, calibration.max   per-element latent range over the training images (H*W)
  fitted_box.<i>.lower, .upper       DP-GLOW's fitted clip box for one budget (fitted_box.py),
                                     described under the metadata key "fitted_box"
Files written before fitted boxes have neither and read unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from safetensors.torch import safe_open

from glow_engine.atomic import write_atomic, write_text_atomic
from glow_engine.errors import UserError
from glow_engine.fitted_box import META_KEY as BOX_KEY
from glow_engine.fitted_box import FittedBoxError, FittedBoxes
from glow_engine.flow import Glow, GlowConfig
from glow_engine.ood import OODReference
from glow_engine.reading import MiB, ReadError, check_file, read_text

FORMAT = "dp-glow-model"
FORMAT_VERSION = 1
WEIGHTS_NAME = "weights.safetensors"
META_NAME = "model.json"
META_KEY = "dpglow"
DEGENERATE_SHARE = 0.01  # of latent elements with zero range; trained models have none
MAX_MODEL_BYTES = 4096 * MiB  # the shipped 256x256 models are tens of MiB


class ModelFileError(UserError, ValueError):
    """A model file that cannot be used; str() is the one message shown to the user."""


@dataclass
class Calibration:
    """Per-element latent range (docs/method.md section 2) and derived vectors."""

    lo: np.ndarray  # min_k
    hi: np.ndarray  # max_k
    info: dict = field(default_factory=dict)  # n_images, data description, bpd percentiles...
    ood: OODReference | None = None  # the out-of-distribution check's reference (ood.py)

    @property
    def delta(self) -> np.ndarray:
        return self.hi - self.lo

    @property
    def centre(self) -> np.ndarray:
        return (self.hi + self.lo) / 2

    def width(self, alpha: float) -> np.ndarray:
        return alpha * (self.hi - self.lo)

    def degenerate(self) -> str | None:
        """Why this range cannot privatise (None when it can): a box of zero width is one
        point, so if many elements have one the releases are (nearly) the same constant
        image whatever the input, e.g. after calibrating on a few identical images."""
        zero = int((self.delta <= 0).sum())
        if zero > DEGENERATE_SHARE * self.delta.size:
            return (f"{zero} of {self.delta.size} latent elements have no range (the "
                    "calibration images do not vary): every release would be nearly the same "
                    "image")
        return None


@dataclass
class LoadedModel:
    flow: Glow
    meta: dict
    calibration: Calibration | None
    sha256: str
    path: Path | None = None
    fitted_box: FittedBoxes | None = None  # DP-GLOW's fitted clip boxes, if fitted

    @property
    def resolution(self) -> int:
        return self.flow.cfg.resolution

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


def content_hash(tensors: dict[str, np.ndarray], meta: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}\n".encode())
        h.update(arr.tobytes())
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def _tensors_of(flow: Glow, calibration: Calibration | None,
                fitted_box: FittedBoxes | None) -> dict[str, np.ndarray]:
    tensors = {f"flow.{k}": v.detach().cpu().contiguous().numpy()
               for k, v in flow.state_dict().items()}
    if fitted_box is not None:
        tensors.update(fitted_box.to_file()[0])
    if calibration is not None:
        tensors["calibration.min"] = calibration.lo.astype(np.float32)
        tensors["calibration.max"] = calibration.hi.astype(np.float32)
        if calibration.ood is not None:
            tensors.update({k: v.astype(np.float64) for k, v in calibration.ood.tensors().items()})
    return tensors


def save_model(path: str | Path, flow: Glow, meta: dict,
               calibration: Calibration | None = None,
               fitted_box: FittedBoxes | None = None) -> str:
    """Write a model atomically; a path ending in .safetensors gives the single-file form."""
    path = Path(path)
    meta = dict(meta, format=FORMAT, format_version=FORMAT_VERSION,
                architecture=flow.cfg.to_dict())
    if calibration is not None:
        meta["calibration"] = calibration.info
    else:
        meta.pop("calibration", None)
    if fitted_box is not None:
        meta[BOX_KEY] = fitted_box.to_file()[1]
    else:
        meta.pop(BOX_KEY, None)
    tensors = _tensors_of(flow, calibration, fitted_box)
    meta["sha256"] = content_hash(tensors, meta)
    text = json.dumps(meta, indent=2, sort_keys=True)
    if path.suffix == ".safetensors":
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={META_KEY: text}),
                     overwrite=True)
    else:
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(path / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp)), overwrite=True)
        write_text_atomic(path / META_NAME, text + "\n", overwrite=True)
    return meta["sha256"]


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    if not path.exists():
        raise ModelFileError(f"Model not found: {path}")
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if path.is_dir():
        missing = [n for n in (WEIGHTS_NAME, META_NAME) if not (path / n).exists()]
        if missing:
            raise ModelFileError(f"Model {path.name} is incomplete: {' and '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} missing")
    try:
        check_file(weights, what="model weights", limit=MAX_MODEL_BYTES)  # not a named pipe
        tensors = load_file(str(weights))
        if path.is_dir():
            meta = json.loads(read_text(path / META_NAME, what="model metadata",
                                        limit=MAX_MODEL_BYTES))
        else:
            with safe_open(str(weights), framework="np") as f:
                header = f.metadata() or {}
            if META_KEY not in header:
                raise ModelFileError(f"{path.name} is a safetensors file but not a DP-GLOW model "
                                     "(no 'dpglow' metadata)")
            meta = json.loads(header[META_KEY])
    except ModelFileError:
        raise
    except ReadError as e:
        raise ModelFileError(str(e)) from None
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise ModelFileError(f"Model {path.name} is damaged or truncated ({e})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path.name} is not a DP-GLOW model file (its metadata is not "
                             "a JSON object)")
    return tensors, meta


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata, verified against the weights' hash."""
    tensors, meta = _read(Path(path))
    _verify(Path(path), tensors, meta)
    return meta


def _verify(path: Path, tensors: dict[str, np.ndarray], meta: dict) -> None:
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path.name} is not a DP-GLOW model file")
    version = meta.get("format_version", 0)
    if not isinstance(version, int):
        raise ModelFileError(f"{path.name} has an invalid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path.name} was written by a newer version "
                             f"(format {meta['format_version']}); please update the program")
    if meta.get("sha256") != content_hash(tensors, meta):
        raise ModelFileError(f"Model {path.name} failed its integrity check (content hash "
                             "mismatch): it was modified or damaged after it was written")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load and verify a model; every failure is one ModelFileError with a clear message."""
    path = Path(path)
    tensors, meta = _read(path)
    _verify(path, tensors, meta)
    try:
        cfg = GlowConfig.from_dict(meta["architecture"])
        flow = Glow(cfg)
        state = {k[5:]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                 if k.startswith("flow.")}
        flow.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        # load_state_dict's first line is only a heading; its details follow, tab-indented
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()),
                      str(e).strip() or type(e).__name__)
        raise ModelFileError(f"Model {path.name} does not match its declared architecture "
                             f"({detail if len(detail) <= 160 else detail[:160] + '…'})") from None
    broken = next((k for k, v in tensors.items() if k.startswith("flow.")
                   and v.dtype.kind == "f" and not np.isfinite(v).all()), None)
    if broken is not None:
        raise ModelFileError(f"Model {path.name} holds non-finite weights ({broken[5:]}): it "
                             "is damaged or its training diverged")
    calibration = _calibration(path, tensors, meta, flow.num_pixels)
    try:
        boxes = FittedBoxes.from_file(tensors, meta.get(BOX_KEY), flow.num_pixels, cfg.levels)
    except FittedBoxError as e:
        raise ModelFileError(f"Model {path.name}: {e}") from None
    flow.to(device).eval()
    return LoadedModel(flow, meta, calibration, meta["sha256"], path, boxes)


def _calibration(path: Path, tensors: dict[str, np.ndarray], meta: dict,
                 num_pixels: int) -> Calibration | None:
    present = [k in tensors for k in ("calibration.min", "calibration.max")]
    if not any(present):
        return None
    if not all(present):
        raise ModelFileError(f"Model {path.name} holds only half of its calibration "
                             "(calibration.min/max)")
    lo = tensors["calibration.min"].astype(np.float64)
    hi = tensors["calibration.max"].astype(np.float64)
    if lo.shape != (num_pixels,) or hi.shape != (num_pixels,):
        raise ModelFileError(f"Model {path.name}: calibration vectors have shapes {lo.shape} "
                             f"and {hi.shape}, the flow needs ({num_pixels},)")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all()):
        raise ModelFileError(f"Model {path.name}: calibration vectors are not a valid range "
                             "(non-finite, or min > max)")
    if reason := Calibration(lo, hi).degenerate():
        raise ModelFileError(f"Model {path.name} has a degenerate calibration: {reason}; run "
                             "`dpglow calibrate` on its training images")
    try:
        ood = OODReference.from_tensors(tensors)
    except ValueError as e:
        raise ModelFileError(f"Model {path.name}: {e}") from None
    return Calibration(lo, hi, dict(meta.get("calibration", {})), ood)
