"""Files and folders: opening an image, listing a folder's images, and the folder browser's
thumbnails with their anomaly scores. Reading a file never needs the model."""

from __future__ import annotations

import numpy as np

from app.core.messages import FolderListing, FolderRequest, OpenRequest, Source, Thumb, ThumbRequest
from glow_engine.anomaly import AnomalyScorer
from glow_engine.errors import UserError
from glow_engine.imaging import load_image
from glow_engine.imaging.discovery import find_images
from glow_engine.imaging.frame import to_square
from glow_engine.release.deid import kept_values

THUMB_SIZE = 96


def open_image(request: OpenRequest) -> Source:
    image = load_image(request.path)
    return Source(image.pixels, image.path.name, request.id, image,
                  kept_header=kept_values(image.dataset))


def list_folder(request: FolderRequest) -> FolderListing:
    return FolderListing(request.id, request.folder, tuple(find_images(request.folder)))


def thumb(request: ThumbRequest, scorer: AnomalyScorer | None) -> Thumb:
    """One folder entry (the first of the request's paths): thumbnail and score."""
    path = request.paths[0]
    try:
        image = load_image(path)
    except UserError as exc:
        return Thumb(request.id, path, None, None, str(exc))
    pixels, score = image.pixels, None
    if scorer is not None:
        frame = to_square(pixels, scorer.resolution)[0]
        score = scorer.score(frame, np.array([image.colour]))[0]
    return Thumb(request.id, path, to_square(pixels, THUMB_SIZE)[0], score)
