"""Training/evaluation image sets and anatomy-preserving augmentation.

Sources: the project's `.npz` files (keys `images`, `labels`, `split`, optional `patient_ids`,
`views`, `ids`), a folder of PNG/JPEG/TIFF/DICOM files, or a CSV with columns `path` and
`label` (optional `patient_id`, `view`; paths relative to the CSV). Every image becomes uint8
at the model resolution (aspect-preserving, black-padded: see imaging.frame.to_square).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glow_engine.errors import UserError
from glow_engine.imaging import load_image
from glow_engine.imaging.discovery import find_images
from glow_engine.imaging.frame import to_square
from glow_engine.imaging.pixels import to_uint8
from glow_engine.reading import MiB, ReadError, check_file, read_text


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, R, R)
    labels: np.ndarray  # int64 (N,), -1 when unknown
    patient_ids: np.ndarray  # str (N,)
    views: np.ndarray  # str (N,), "" when unknown
    ids: np.ndarray  # str (N,)
    description: str

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, mask: np.ndarray, note: str = "") -> ImageSet:
        return ImageSet(self.images[mask], self.labels[mask], self.patient_ids[mask],
                        self.views[mask], self.ids[mask], self.description + note)

    @staticmethod
    def concat(sets: list[ImageSet]) -> ImageSet:
        return ImageSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in
                          ("images", "labels", "patient_ids", "views", "ids")),
                        " + ".join(s.description for s in sets))


def resize_uint8(images: np.ndarray, resolution: int) -> np.ndarray:
    """Square uint8 stack -> resolution x resolution, area-averaged when shrinking."""
    if images.shape[-1] == resolution:
        return images
    t = torch.from_numpy(images).float()[:, None]
    factor = images.shape[-1] / resolution
    if factor == int(factor) and factor > 1:
        t = F.avg_pool2d(t, int(factor))
    else:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear",
                          antialias=True, align_corners=False)
    return t[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def _from_npz(path: Path, resolution: int, split: str | None) -> ImageSet:
    check_file(path, what="image set")  # a named pipe would block np.load for ever
    with np.load(path, allow_pickle=False) as z:
        n = len(z["images"])

        def col(key: str, default) -> np.ndarray:
            return z[key] if key in z.files else np.full(n, default)

        mask = np.ones(n, bool) if split is None or "split" not in z.files else z["split"] == split
        images = resize_uint8(z["images"][mask], resolution)
        labels = col("labels", -1)[mask].astype(np.int64)
        pids = col("patient_ids", "").astype(str)[mask]
        views = col("views", "").astype(str)[mask]
        ids = col("ids", "").astype(str)[mask]
    desc = f"{path.name}" + (f" split={split}" if split else "")
    return ImageSet(images, labels, pids, views, ids, desc)


def _load_files(paths: list[Path], resolution: int) -> np.ndarray:
    out = np.empty((len(paths), resolution, resolution), np.uint8)
    for i, p in enumerate(paths):
        frame, _ = to_square(load_image(p).pixels, resolution)
        out[i] = to_uint8(frame)
    return out


def _csv_rows(path: Path) -> tuple[list[Path], list[dict]]:
    text = read_text(path, what="image list", limit=64 * MiB)  # guarded: never a named pipe
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows or "path" not in rows[0]:
        raise ValueError(f"{path.name}: a CSV needs a 'path' column (and usually 'label')")
    return [(path.parent / r["path"]).resolve() for r in rows], rows


def _from_csv(path: Path, resolution: int) -> ImageSet:
    files, rows = _csv_rows(path)
    labels = np.array([int(r.get("label") or -1) for r in rows], np.int64)
    pids = np.array([r.get("patient_id", "") for r in rows], str)
    views = np.array([r.get("view", "") for r in rows], str)
    ids = np.array([p.name for p in files], str)
    return ImageSet(_load_files(files, resolution), labels, pids, views, ids, path.name)


def _folder_files(path: Path) -> list[Path]:
    files = find_images(path)
    if not files:
        raise ValueError(f"{path}: no images found")
    return files


def _from_folder(path: Path, resolution: int) -> ImageSet:
    files = _folder_files(path)
    n = len(files)
    return ImageSet(_load_files(files, resolution), np.full(n, -1, np.int64),
                    np.full(n, "", object).astype(str), np.full(n, "", object).astype(str),
                    np.array([p.name for p in files], str), f"folder {path.name}")


class DataSourceError(UserError, ValueError):
    """An image source (.npz, CSV or folder) that cannot be read."""


@contextlib.contextmanager
def _reading(source: Path) -> Iterator[None]:
    """Any failure to read a source becomes one user-facing error naming it."""
    try:
        yield
    except ReadError as e:  # the guarded read's refusal, in this error's words
        raise DataSourceError(f"cannot read images from {source}: {e.reason}") from None
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise DataSourceError(f"cannot read images from {source}: {_reason(e)}") from None


def _reason(error: Exception) -> str:
    """NumPy's words, where they would mislead: pickled data is never loaded here."""
    text = str(error.args[0]) if error.args else str(error)
    if "pickle" in text:
        return "not a .npz of plain arrays (pickled objects are never loaded)"
    if isinstance(error, KeyError) and " is not a file in the archive" in text:
        return f"it has no {text.split(' is not a file')[0]!r} array"
    return str(error)


def load_image_set(source: str | Path, resolution: int, split: str | None = None,
                   label: int | None = None) -> ImageSet:
    """Load one source; `split` applies to .npz files, `label` keeps only that label."""
    source = Path(source)
    with _reading(source):
        if source.suffix == ".npz":
            s = _from_npz(source, resolution, split)
        elif source.suffix == ".csv":
            s = _from_csv(source, resolution)
        elif source.is_dir():
            s = _from_folder(source, resolution)
        else:
            raise ValueError(f"{source}: expected a .npz file, a .csv file or a folder")
    return s if label is None else s.subset(s.labels == label, f" label={label}")


def stream_image_set(source: str | Path, resolution: int, split: str | None = None,
                     batch_size: int = 32) -> tuple[int, str, Iterator[np.ndarray]]:
    """(count, description, uint8 batches) of one source. Unlike load_image_set, folders and
    CSVs are read one batch at a time, so memory does not grow with the number of images."""
    source = Path(source)
    if source.suffix == ".npz":
        s = load_image_set(source, resolution, split)
        chunks = (s.images[i:i + batch_size] for i in range(0, len(s), batch_size))
        return len(s), s.description, chunks
    with _reading(source):
        if source.suffix == ".csv":
            files, desc = _csv_rows(source)[0], source.name
        elif source.is_dir():
            files, desc = _folder_files(source), f"folder {source.name}"
        else:
            raise ValueError(f"{source}: expected a .npz file, a .csv file or a folder")
    chunks = (_load_files(files[i:i + batch_size], resolution)
              for i in range(0, len(files), batch_size))
    return len(files), desc, chunks


def augment(pixels: torch.Tensor, generator: torch.Generator | None = None,
            strength: float = 1.0) -> torch.Tensor:
    """Small random shift/scale/rotation and intensity changes on [0, 1] images (B, 1, H, W).

    Never a left-right flip: laterality is a clinical finding (situs inversus, dextrocardia).
    """
    b, dev = pixels.shape[0], pixels.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * (hi - lo) + lo).to(dev)

    s = strength
    scale = uniform(1 - 0.05 * s, 1 + 0.05 * s)
    angle = uniform(-3 * s, 3 * s) * math.pi / 180
    tx, ty = uniform(-0.04 * s, 0.04 * s), uniform(-0.04 * s, 0.04 * s)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    contrast = uniform(1 - 0.1 * s, 1 + 0.1 * s)[:, None, None, None]
    gamma = uniform(1 - 0.1 * s, 1 + 0.1 * s)[:, None, None, None]
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean).clamp(0, 1) ** gamma
    return out.clamp(0, 1)
