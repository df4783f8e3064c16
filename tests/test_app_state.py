"""The viewer's view-state and engine session, driven synchronously without Qt."""

from __future__ import annotations

import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import saved_model
from PIL import Image
from test_app_support import shared_pair, write_png

from app.core.messages import (
    Failed,
    Kind,
    LedgerRequest,
    PrivacyParams,
    RenderRequest,
    StripRequest,
)
from app.core.pane_keys import MAIN_KEYS, MECHANISM_KEYS, ORIGINAL, PaneKey
from app.core.state import Aspect, ViewState
from app.engine.session import Session
from glow_engine.overlays import BlockMarker


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return shared_pair(tmp_path_factory)


class Harness:
    """A state wired straight to a session: every request is answered at once."""

    def __init__(self) -> None:
        self.state = ViewState()
        self.session = Session("cpu")
        self.requests: list = []
        self.changes: list[frozenset[Aspect]] = []
        self.state.requested.connect(self._answer)
        self.state.changed.connect(self.changes.append)
        self.hold = False  # True: collect requests without answering

    def _answer(self, request) -> None:
        self.requests.append(request)
        if not self.hold:
            self.state.accept(self.session.handle(request))


@pytest.fixture
def h(models) -> Harness:
    harness = Harness()
    harness.state.load_models(*models)
    return harness


def test_sample_renders_every_mechanism_and_scores(h: Harness) -> None:
    h.state.new_sample()
    s = h.state
    assert s.source is not None and s.source.image is None and "no patient" in s.source.note
    assert set(s.rendered.panes) == set(MECHANISM_KEYS)
    assert set(s.scores) == set(MAIN_KEYS)
    for pane in s.rendered.panes.values():
        assert pane.pixels.shape == (32, 32) and pane.pixels.dtype == np.float32
        assert pane.pixels.min() >= 0.0 and pane.pixels.max() <= 1.0
        assert "e_px=100" in pane.caption


def test_open_keeps_the_aspect_ratio(h: Harness, tmp_path: Path) -> None:
    h.state.open(write_png(tmp_path / "a.png", height=96, width=48))
    s = h.state
    assert s.source.pixels.shape == (96, 48)
    assert s.rendered.panes[PaneKey("dpglow")].pixels.shape == (32, 16)  # cropped, not stretched
    assert s.rendered.original.shape == (32, 16)
    assert s.total_epsilon == 100 * 32 * 32


def test_marker_and_flip_change_the_input_and_report_metrics(h: Harness, tmp_path: Path):
    h.state.open(write_png(tmp_path / "a.png"))
    source = h.state.source.pixels
    h.state.set_flip(True)
    np.testing.assert_array_equal(h.state.original, source[:, ::-1])
    h.state.add_marker(BlockMarker(0.5, 0.5, 0.25, 1.0))
    h.state.add_marker(BlockMarker(0.2, 0.3, 0.1, 0.0))
    original = h.state.original
    assert original[48, 40] == 1.0  # the marker is painted on the displayed input
    metrics = h.state.rendered.metrics
    assert set(metrics[PaneKey("dpglow")]) == {"similarity", "marker1", "marker2"}
    assert metrics[PaneKey("idldp")]["marker1"] > 0.5  # light ID-LDP noise leaves the marker
    h.state.remove_marker(0)
    assert h.state.markers == (BlockMarker(0.2, 0.3, 0.1, 0.0),)
    h.state.clear_markers()
    assert h.state.markers == ()
    assert set(h.state.rendered.metrics[PaneKey("dpglow")]) == {"similarity"}


def test_outdated_results_are_ignored(h: Harness) -> None:
    h.state.new_sample()
    h.hold = True
    h.state.set_e_px(10)
    h.state.set_e_px(1000)
    old, new = [r for r in h.requests if r.kind is Kind.RENDER][-2:]
    assert h.state.accept(h.session.handle(new)) is not False  # the newest is taken
    assert h.state.rendered.request_id == new.id
    assert h.state.accept(h.session.handle(old)) is False  # late answer to an old position
    assert h.state.rendered.request_id == new.id
    assert "1000" in h.state.rendered.panes[PaneKey("dpglow")].title


def test_a_new_noise_draw_changes_the_preview_and_the_same_seed_repeats(h: Harness) -> None:
    h.state.new_sample()
    first = h.state.rendered.panes[PaneKey("idldp")].pixels
    h.state.new_noise()
    second = h.state.rendered.panes[PaneKey("idldp")].pixels
    assert not np.array_equal(first, second)
    h.state.set_e_px(10)
    h.state.set_e_px(100)
    np.testing.assert_array_equal(h.state.rendered.panes[PaneKey("idldp")].pixels, second)


def test_infinity_with_and_without_clip(h: Harness) -> None:
    h.state.new_sample()
    h.state.set_e_px(math.inf)
    clipped = h.state.rendered.panes[PaneKey("dpglow")]
    assert "inf" in clipped.caption and h.state.rendered.noise_scale["dpglow"] == 0
    h.state.set_clip(False)
    plain = h.state.rendered.panes[PaneKey("dpglow")]
    assert "without clip" in plain.caption
    # The plain reconstruction is the input itself (to within 8-bit quantisation).
    assert np.abs(plain.pixels - h.state.rendered.original).max() <= 1 / 255 + 1e-6


def test_fixed_budget_strip(h: Harness) -> None:
    h.state.new_sample()
    h.state.set_display(strip=True)
    assert set(h.state.strip.panes) == {PaneKey(m, e) for m in ("dpglow", "idldp", "dppix")
                                        for e in (1000.0, 100.0, 10.0)}
    assert {PaneKey("dpglow", 10.0), PaneKey("idldp", 1000.0),
            PaneKey("dppix", 10.0)} <= set(h.state.scores)
    renders = len(h.requests)
    h.state.set_e_px(300)  # the slider does not recompute the fixed budgets
    assert not any(isinstance(r, StripRequest) for r in h.requests[renders:])


def test_bad_image_keeps_the_previous_one(h: Harness, tmp_path: Path) -> None:
    h.state.new_sample()
    before = h.state.source
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    h.state.open(bad)
    assert h.state.source is before
    assert "broken.png" in h.state.message and Aspect.ERROR in h.changes[-1]


def huge_png(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A valid PNG header declaring a huge image (the pixel data is never reached)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def test_huge_image_is_refused_and_a_colour_photo_is_flagged(h: Harness, tmp_path: Path):
    h.state.new_sample()
    before = h.state.source
    h.state.open(huge_png(tmp_path / "huge.png"))
    assert h.state.source is before and "too large" in h.state.message
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(tmp_path / "c.jpg")
    h.state.open(tmp_path / "c.jpg")
    assert h.state.source.name == "c.jpg" and h.state.source.pixels.shape == (60, 90)
    assert h.state.scores[ORIGINAL].out_of_distribution  # noise is no chest X-ray


def test_bad_model_keeps_the_previous_models(h: Harness, tmp_path: Path) -> None:
    h.state.new_sample()
    before = h.state.models
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "weights.safetensors").write_bytes(b"not a model")
    (junk / "model.json").write_text("{}")
    h.state.load_models(junk, None)
    assert h.state.models is before and "junk" in h.state.message
    uncalibrated = saved_model(tmp_path / "raw", seed=5, calibrated=False)
    h.state.load_models(uncalibrated, None)
    assert h.state.models is before and "calibration" in h.state.message
    other = saved_model(tmp_path / "r64", seed=6, calibrated=False, resolution=64)
    h.state.load_models(before.mixture_path, other)
    assert h.state.models is before and "64x64" in h.state.message
    h.state.set_e_px(10)  # the old models still work
    assert "10" in h.state.rendered.panes[PaneKey("dpglow")].title


def test_sampling_without_a_model_is_a_message() -> None:
    state = ViewState()
    state.new_sample()
    assert "No model" in state.message


def test_engine_errors_become_failures_not_crashes(h: Harness) -> None:
    request = RenderRequest(id=7, source=None, markers=(), flip=False, params=PrivacyParams(),
                            budgets=(100.0,))
    failed = Session().handle(request)
    assert isinstance(failed, Failed) and failed.message == "No model is loaded."
    failed = h.session.handle(request)  # a bug (no source): reported, not raised
    assert isinstance(failed, Failed) and "Unexpected error (AttributeError" in failed.message


def count_calls(monkeypatch, method: str) -> list[str]:
    """Every call of every mechanism's `method`, by mechanism name."""
    from glow_engine.mechanisms import IDLDP, DPGlow, DPPix

    calls: list[str] = []
    for cls in (DPGlow, IDLDP, DPPix):
        real = getattr(cls, method)

        def spy(self, *args, real=real, **kwargs):
            calls.append(self.name)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, spy)
    return calls


def test_switching_the_sensitivity_mode_does_not_re_encode(h: Harness, monkeypatch) -> None:
    h.state.set_mode("paper")  # whichever rule DP-GLOW's description makes the default
    h.state.new_sample()
    paper = h.state.rendered
    encodes = count_calls(monkeypatch, "encode")
    h.state.set_mode("tight")
    tight = h.state.rendered
    assert encodes == []  # the clip box is the same: only the noise scale changes
    assert "tight" in tight.panes[PaneKey("dpglow")].caption
    assert tight.noise_scale["dpglow"] < paper.noise_scale["dpglow"]
    h.state.set_alpha(0.5)
    assert encodes == ["dpglow"]  # a new clip box: DP-GLOW encodes again, ID-LDP does not


def test_previews_of_a_kept_input_survive_another_input_s_eviction(h: Harness,
                                                                   monkeypatch) -> None:
    h.state.new_sample()
    h.state.add_marker(BlockMarker(0.5, 0.5, 0.2, 1.0))  # input 2 (the sample is input 1)
    previews = count_calls(monkeypatch, "preview")
    h.state.add_marker(BlockMarker(0.2, 0.2, 0.1, 0.0))  # input 3 evicts input 1
    assert previews == ["dpglow", "idldp", "dppix"]
    h.state.remove_marker(1)  # back to input 2, still kept, and its previews with it
    assert previews == ["dpglow", "idldp", "dppix"]


def test_lru_keeps_the_most_recently_used() -> None:
    from app.engine.lru import LRU

    cache: LRU[str, int] = LRU(2)
    made: list[str] = []

    def make(key: str) -> int:
        made.append(key)
        return len(made)

    assert cache.get("a", lambda: make("a")) == 1
    cache.get("b", lambda: make("b"))
    assert cache.get("a", lambda: make("a")) == 1  # kept: made once
    cache.get("c", lambda: make("c"))  # evicts b, the least recently used
    assert "b" not in cache and "a" in cache and len(cache) == 2
    cache.put("d", 9)
    assert cache["d"] == 9 and "a" not in cache and made == ["a", "b", "c"]
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        LRU(0)


def test_the_engine_reads_the_ledger_and_never_creates_one(h: Harness, tmp_path: Path):
    from glow_engine.release.ledger import Ledger, Release

    h.state.open(write_png(tmp_path / "a.png"))
    path = tmp_path / "ledger.sqlite"
    h.state.read_ledger(path)
    assert isinstance(h.requests[-1], LedgerRequest)
    assert not h.state.ledger.exists and not path.exists()
    sha = h.state.source.image.content_sha256
    with Ledger(path) as ledger:  # a reserved release counts
        ledger.reserve(Release(sha, None, "dpglow", "paper", 10.0, 10.0 * 32 * 32, "0" * 64,
                               "x.png"))
    h.state.read_ledger(path)
    assert h.state.ledger.exists and h.state.ledger.on_image == 10.0 * 32 * 32
    path.write_bytes(b"not a ledger at all" * 100)
    h.state.read_ledger(path)
    assert h.state.ledger.error and h.state.message == ""  # said in the dialog, no error box


def test_a_folder_is_listed_by_the_engine_then_scored(h: Harness, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    (folder / "sub").mkdir(parents=True)
    paths = (write_png(folder / "b.png"), write_png(folder / "sub" / "a.png", seed=4))
    (folder / "notes.txt").write_text("not an image")
    h.state.open_folder(folder)
    assert h.state.folder.paths == tuple(sorted(paths))
    assert h.requests[-1].paths == h.state.folder.paths  # then every image is scored
    assert list(h.state.thumbs) == [sorted(paths)[0]]  # (the worker requeues the rest)
    empty = tmp_path / "empty"
    empty.mkdir()
    h.state.open_folder(empty)
    assert h.state.message == f"No images found in {empty}."
    assert h.state.folder.paths == tuple(sorted(paths))  # the previous folder stays


def test_an_outdated_export_s_answer_is_still_told(h: Harness, tmp_path: Path) -> None:
    h.state.new_sample()
    h.hold = True
    for name in ("a", "b"):
        h.state.export("dpglow", tmp_path / name, "png", tmp_path / "ledger.sqlite")
    first, _ = [r for r in h.requests if r.kind is Kind.EXPORT]
    assert h.state.accept(Failed(first.id, Kind.EXPORT, "disk full"))  # a file, or why not
    assert h.state.message == "disk full"
    assert not h.state.accept(Failed(first.id, Kind.RENDER, "an old frame failed"))
    assert h.state.message == "disk full"


def test_preview_draw_is_seeded_at_random_in_each_session(models, tmp_path: Path) -> None:
    """Nobody can regenerate a session's previews (issue 10): two sessions on the same image,
    settings and draw number show different preview noise (a fixed seed showed the same)."""
    image = write_png(tmp_path / "a.png")
    panes = []
    for _ in range(2):
        harness = Harness()
        harness.state.load_models(*models)
        harness.state.open(image)
        panes.append(harness.state.rendered.panes[PaneKey("dpglow")].pixels)
    assert not np.array_equal(panes[0], panes[1])


def test_the_dppix_pane_shows_noisy_block_means_that_follow_the_slider(h: Harness) -> None:
    h.state.new_sample()
    h.state.set_e_px(math.inf)  # no noise: exactly the 8 x 8 block means, in 8-bit steps
    frame = h.state.rendered.panes[PaneKey("dppix")].frame
    means = h.state.rendered.original.reshape(4, 8, 4, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(frame, np.kron(means, np.ones((8, 8))), atol=0.5 / 255 + 1e-6)
    h.state.set_e_px(0.1)
    pane, scale = h.state.rendered.panes[PaneKey("dppix")], h.state.rendered.noise_scale["dppix"]
    assert pane.title == "DP-Pix (b=8)   ε/px = 0.1" and "block 8 e_px=0.1 " in pane.caption
    assert scale == pytest.approx(1 / (64 * 0.1))  # sensitivity 1 per block mean, e_px * b^2
    blocks = pane.frame.reshape(4, 8, 4, 8)
    assert np.ptp(blocks, axis=(1, 3)).max() == 0  # still constant on each block
    assert np.abs(pane.frame - frame).max() > 0.05  # and noisy
    h.state.set_e_px(100)
    assert h.state.rendered.noise_scale["dppix"] == pytest.approx(1 / (64 * 100))


def test_the_dppix_block_size_re_encodes_dppix_alone_and_redraws_the_strip(
        h: Harness, monkeypatch) -> None:
    h.state.new_sample()
    h.state.set_display(strip=True)
    encodes = count_calls(monkeypatch, "encode")
    h.state.set_block(4)
    assert encodes == ["dppix"]  # DP-GLOW's and ID-LDP's encodings do not depend on it
    pane = h.state.rendered.panes[PaneKey("dppix")]
    assert "block 4" in pane.caption and h.state.rendered.noise_scale["dppix"] == \
        pytest.approx(1 / (16 * 100))
    assert np.ptp(pane.frame.reshape(8, 4, 8, 4), axis=(1, 3)).max() == 0
    assert "block 4" in h.state.strip.panes[PaneKey("dppix", 10.0)].caption
    with pytest.raises(ValueError, match="divide the resolution 32"):
        h.state.set_block(5)
    assert h.state.params.block == 4


def test_an_export_with_dppix_is_a_release_recorded_with_its_block_size(
        h: Harness, tmp_path: Path) -> None:
    from glow_engine.release.ledger import Ledger

    h.state.open(write_png(tmp_path / "a.png"))
    h.state.set_e_px(10)
    out, ledger_path = tmp_path / "released", tmp_path / "ledger.sqlite"
    # a PNG carries no patient ID: the officer confirms it is a patient of its own
    h.state.export("dppix", out, "png", ledger_path, one_patient_per_image=True)
    file = h.state.last_export.path
    assert file.parent == out and re.fullmatch(r"[0-9a-f]{16}\.png", file.name)  # random
    assert "DP-Pix block 8 e_px=10" in h.state.last_export.summary
    with Ledger(ledger_path) as ledger:
        (row,) = ledger.releases()
    assert (row["mechanism"], row["mode"], row["e_px"]) == ("dppix", "b8", 10.0)
    assert row["total_epsilon"] == 10.0 * 32 * 32 and row["status"] == "written"
    manifest = (out / "manifest.csv").read_text()
    assert file.name in manifest and ",dppix,b8," in manifest
