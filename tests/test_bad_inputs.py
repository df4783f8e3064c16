"""Every bad input gets a clear one-line answer: no traceback, no hang, the originals never
modified, nothing partial left behind.

The corpus (images, models, ledgers, output folders) is built in a temporary folder. Each case
runs `dpglow` in-process and checks the exit code, the message, that the corpus files are
byte-for-byte what they were, and that no output folder holds a temporary or empty file. The
cases that could hang (named pipes, a link to /dev/zero) run in a subprocess with a deadline,
so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from helpers import model_contents, rewrite_model, tiny_images, to_uint8
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit
from test_privatize import write_dicom, write_png

from glow_engine.cli import main
from glow_engine.errors import UserError
from glow_engine.imaging import ImageLoadError, load_image
from glow_engine.mechanisms import create_mechanism
from glow_engine.modelfile import load_model
from glow_engine.release import records
from glow_engine.release.batch import ReleaseInput, ReleaseOptions, release_one
from glow_engine.release.ledger import Ledger, Release

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LINE_STARTS = ("error:", "failed:", "refused:", "skipped:", "not-started:", "warning:")
DEADLINE_S = 180  # a subprocess that has not answered by then is hanging


@dataclass
class Corpus:
    root: Path
    hashes: dict[str, str]  # every regular file of the corpus, as it was built

    def __truediv__(self, name: str) -> Path:
        return self.root / name


def regular_files(root: Path) -> dict[str, str]:
    """sha256 of every regular file under root (links and pipes are never opened)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def jpeg_dicom(path: Path, pixels: np.ndarray) -> Path:
    """A JPEG-baseline (encapsulated) DICOM."""
    write_dicom(path, pixels)
    import pydicom

    ds = pydicom.dcmread(path)
    jpeg = io.BytesIO()
    Image.fromarray(to_uint8(pixels)).save(jpeg, format="JPEG", quality=95)
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return path


def damaged_model(root: Path, source: Path, name: str,
                  damage: Callable[[dict, dict], None]) -> Path:
    path = Path(shutil.copytree(source, root / name))
    tensors, meta = model_contents(path)
    damage(tensors, meta)
    rewrite_model(path, tensors, meta, rehash=True)  # consistent, so only loading can tell
    return path


def _wrong_width(tensors: dict, meta: dict) -> None:
    arch = meta["architecture"]
    arch["width"] = 2 * arch["width"]
    if arch.get("widths"):
        arch["widths"] = [2 * w for w in arch["widths"]]


def _nan_weights(tensors: dict, meta: dict) -> None:
    name = next(k for k in tensors if k.startswith("flow.") and tensors[k].dtype.kind == "f")
    tensors[name] = np.full_like(tensors[name], np.nan)


def _nan_calibration(tensors: dict, meta: dict) -> None:
    tensors["calibration.max"] = np.where(np.arange(tensors["calibration.max"].size) == 3,
                                          np.nan, tensors["calibration.max"])


def _degenerate_calibration(tensors: dict, meta: dict) -> None:
    tensors["calibration.max"] = tensors["calibration.min"].copy()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, engine_model_dir: Path) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    images = tiny_images(6, seed=31)
    model = Path(shutil.copytree(engine_model_dir, root / "model"))
    write_png(root / "good" / "a.png", images[0])
    write_png(root / "good" / "b.png", images[1])
    write_png(root / "bad" / "truncated.png", images[2])
    data = (root / "bad" / "truncated.png").read_bytes()
    (root / "bad" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "bad" / "empty.png").write_bytes(b"")
    (root / "bad" / "text.png").write_text("not an image at all")
    Image.new("L", (4, 4)).save(root / "bad" / "tiny.png")
    Image.new("L", (32, 32)).save(root / "bad" / "really_a_gif.png", format="GIF")
    jpeg = jpeg_dicom(root / "bad" / "jpeg.dcm", images[3]).read_bytes()
    (root / "bad" / "jpeg_truncated.dcm").write_bytes(jpeg[: int(len(jpeg) * 0.8)])
    (root / "bad" / "jpeg.dcm").unlink()
    no_pixels = write_dicom(root / "bad" / "no_pixels.dcm", images[4]).read_bytes()
    (root / "bad" / "no_pixels.dcm").write_bytes(no_pixels[: no_pixels.index(b"\xe0\x7f\x10\x00")])
    with warnings.catch_warnings():  # pydicom warns about the odd value as it writes it
        warnings.simplefilter("ignore")
        write_dicom(root / "warns.dcm", images[5], ViewPosition="not a defined term, oddly long")
    write_dicom(root / "burned.dcm", images[5], burned_in="YES")
    write_dicom(root / "unknown.dcm", images[5], burned_in=None)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no images here")
    (root / "empty_folder").mkdir()
    (root / "list.csv").write_text("path\ngood/a.png\nmissing.png\n")
    (root / "garbage.csv").write_bytes(b"\xff\xfe\x00garbage\x00" * 10)
    (root / "black").mkdir()
    for index in range(2):  # calibrating on these gives a degenerate range: nothing varies
        Image.new("L", (32, 32)).save(root / "black" / f"{index}.png")
    np.savez(root / "objects.npz", images=np.array([{"a": 1}], dtype=object))
    np.savez(root / "no_images.npz", x=np.arange(3))
    damaged_model(root, model, "model_wrong_width", _wrong_width)
    damaged_model(root, model, "model_nan_weights", _nan_weights)
    damaged_model(root, model, "model_nan_calibration", _nan_calibration)
    damaged_model(root, model, "model_degenerate", _degenerate_calibration)
    truncated = Path(shutil.copytree(model, root / "model_truncated"))
    weights = truncated / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (root / "model_text").mkdir()
    (root / "model_text" / "weights.safetensors").write_text("hello")
    (root / "model_text" / "model.json").write_text("{}")
    (root / "garbage.sqlite").write_bytes(b"this is not a database" * 100)
    Ledger(root / "newer.sqlite").close()
    db = sqlite3.connect(root / "newer.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    foreign = sqlite3.connect(root / "foreign.sqlite")  # another program's database
    foreign.execute("CREATE TABLE patients (name TEXT)")
    foreign.commit()
    foreign.close()
    with Ledger(root / "tampered.sqlite") as led:
        led.confirm(led.reserve(Release("a" * 64, "P1", "dpglow", "paper", 1, 1024, "m",
                                        "x.png")).id)
    tampered = sqlite3.connect(root / "tampered.sqlite")
    tampered.execute("UPDATE releases SET total_epsilon = 0")
    tampered.commit()
    tampered.close()
    hang = root / "hang"
    write_png(hang / "good.png", images[0])
    os.mkfifo(hang / "pipe.png")
    os.mkfifo(hang / "pipe")  # no suffix: the DICOM-preamble check must not open it either
    os.symlink("/dev/zero", hang / "zero.png")
    os.symlink("loop.png", hang / "loop.png")
    return Corpus(root, regular_files(root))


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def privatize_args(corpus: Corpus, tmp: Path, *args: object, out: object = None,
                   model: object = None, ledger: object = None) -> list[object]:
    return ["privatize", *args, "--model", model or corpus / "model", "--ledger",
            ledger or tmp / "ledger.sqlite", "--out", out or tmp / "out", "--no-progress",
            "--confirm-one-patient-per-image"]  # the corpus's PNGs have no patient id


def assert_clean_answer(corpus: Corpus, tmp: Path, code: int, out: str, err: str,
                        expected_code: int, fragment: str) -> None:
    """The exit code; one line per problem (exactly one for a refused run), no traceback,
    no warning; and everything left as it should be."""
    assert code == expected_code, (code, out, err)
    assert "Traceback" not in out + err and "Warning" not in err
    lines = err.splitlines()
    if expected_code == 2:
        assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert all(line.startswith(LINE_STARTS) for line in lines), err
    assert not fragment or any(fragment in line for line in lines), (fragment, err)
    assert "allow_pickle" not in err
    assert_untouched(corpus, tmp)


def assert_untouched(corpus: Corpus, tmp: Path) -> None:
    assert regular_files(corpus.root) == corpus.hashes  # the originals are as they were
    for path in tmp.rglob("*"):  # nothing temporary or partial left behind
        if path.is_file():
            assert not path.name.startswith(".") and path.stat().st_size > 0, path


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Corpus, Path], list[object]]
    code: int
    fragment: str


def _privatize(*args: object, **kw: object) -> Callable[[Corpus, Path], list[object]]:
    def build(c: Corpus, t: Path) -> list[object]:
        resolved = [a(c, t) if callable(a) else a for a in args]
        extra = {k: (v(c, t) if callable(v) else v) for k, v in kw.items()}
        return privatize_args(c, t, *resolved, **extra)
    return build


def _calibrate(data: Callable[[Corpus, Path], Path], *args: object
               ) -> Callable[[Corpus, Path], list[object]]:
    """`dpglow calibrate` in place (no --out): a refusal must leave the model as it was."""
    return lambda c, t: ["calibrate", c / "model", "--data", data(c, t), *args,
                         "--no-progress"]


def _c(name: str) -> Callable[[Corpus, Path], Path]:
    return lambda c, t: c / name


def _t(name: str) -> Callable[[Corpus, Path], Path]:
    return lambda c, t: t / name


GOOD = _c("good")
CASES = [
    # ---- images
    Case("truncated-png", _privatize(_c("bad/truncated.png"), "--e-px", "10"), 1,
         "truncated or corrupt"),
    Case("zero-byte-png", _privatize(_c("bad/empty.png"), "--e-px", "10"), 1, "empty (0 bytes)"),
    Case("text-named-png", _privatize(_c("bad/text.png"), "--e-px", "10"), 1, "not an image"),
    Case("gif-named-png", _privatize(_c("bad/really_a_gif.png"), "--e-px", "10"), 1,
         "unsupported image format GIF"),
    Case("too-small", _privatize(_c("bad/tiny.png"), "--e-px", "10"), 1, "too small"),
    Case("truncated-jpeg-dicom", _privatize(_c("bad/jpeg_truncated.dcm"), "--e-px", "10"), 1,
         "truncated (it ends inside its pixel data)"),
    Case("dicom-without-pixels", _privatize(_c("bad/no_pixels.dcm"), "--e-px", "10"), 1,
         "no pixel data"),
    Case("missing-file", _privatize(_c("nowhere.png"), "--e-px", "10"), 1, "file not found"),
    Case("300-char-name", _privatize(lambda c, t: c / ("x" * 300 + ".png"), "--e-px", "10"), 1,
         "file name is too long"),
    Case("folder-without-images", _privatize(_c("notes"), "--e-px", "10"), 2,
         "no images found in"),
    Case("empty-folder", _privatize(_c("empty_folder"), "--e-px", "10"), 2, "no images found"),
    Case("csv-missing-entry", _privatize(_c("list.csv"), "--e-px", "10"), 1, "file not found"),
    Case("csv-garbage", _privatize(_c("garbage.csv"), "--e-px", "10"), 2,
         "cannot read the input list"),
    Case("pydicom-warnings-silent", _privatize(_c("warns.dcm"), "--e-px", "10", "--format",
                                               "dicom"), 0, ""),
    Case("burned-in-yes", _privatize(_c("burned.dcm"), "--e-px", "10"), 1,
         "BurnedInAnnotation = YES"),
    Case("burned-in-unknown", _privatize(_c("unknown.dcm"), "--e-px", "10"), 1,
         "--allow-unknown-burned-in"),
    # ---- models
    Case("model-missing", lambda c, t: ["info", c / "no_model"], 2, "Model not found"),
    Case("model-truncated", lambda c, t: ["info", c / "model_truncated"], 2,
         "damaged or truncated"),
    Case("model-not-safetensors", lambda c, t: ["info", c / "model_text"], 2, "model_text"),
    Case("model-wrong-width", lambda c, t: ["info", c / "model_wrong_width"], 2,
         "does not match its declared architecture"),
    Case("model-nan-weights", lambda c, t: ["info", c / "model_nan_weights"], 2,
         "non-finite weights"),
    Case("model-nan-calibration", lambda c, t: ["info", c / "model_nan_calibration"], 2,
         "not a valid range"),
    Case("model-degenerate-calibration", lambda c, t: ["info", c / "model_degenerate"], 2,
         "degenerate calibration"),
    Case("privatize-with-nan-model", _privatize(GOOD, "--e-px", "10",
                                                model=_c("model_nan_weights")), 2,
         "non-finite weights"),
    Case("calibrate-two-black-images", _calibrate(_c("black"), "--device", "cpu"), 2,
         "degenerate range"),
    Case("calibrate-object-npz", _calibrate(_c("objects.npz")), 2,
         "pickled objects are never loaded"),
    Case("calibrate-npz-without-images", _calibrate(_c("no_images.npz")), 2,
         "has no 'images' array"),
    Case("calibrate-batch-size-0", _calibrate(GOOD, "--batch-size", "0"), 2, "--batch-size"),
    # ---- outputs
    Case("out-under-proc", _privatize(GOOD, "--e-px", "10", out="/proc/dpglow-test/out"), 2,
         "cannot write into the output folder"),
    Case("out-is-a-file", _privatize(GOOD, "--e-px", "10", out=_c("list.csv")), 2,
         "exists and is not a folder"),
    Case("out-is-the-input-folder", _privatize(GOOD, "--e-px", "10", out=GOOD), 2,
         "is the output folder or inside it"),
    Case("input-inside-out", _privatize(GOOD, "--e-px", "10", out=lambda c, t: c.root), 2,
         "is the output folder or inside it"),
    # ---- arguments
    Case("device-cuda-without-cuda", _privatize(GOOD, "--e-px", "10", "--device", "cuda"), 2,
         "CUDA is not available"),
    Case("device-bogus", _privatize(GOOD, "--e-px", "10", "--device", "bogus"), 2,
         "unknown device 'bogus'"),
    Case("idldp-resolution-0", _privatize(GOOD, "--e-px", "10", "--mechanism", "idldp",
                                          "--resolution", "0"), 2, "--resolution must be"),
    Case("resolution-100000", _privatize(GOOD, "--e-px", "10", "--mechanism", "idldp",
                                         "--resolution", "100000"), 2, "--resolution must be"),
    Case("size-100000", _privatize(GOOD, "--e-px", "10", "--size", "100000"), 2,
         "--size must be between"),
    Case("size-0", _privatize(GOOD, "--e-px", "10", "--size", "0"), 2, "--size must be"),
    Case("batch-size-0", _privatize(GOOD, "--e-px", "10", "--batch-size", "0"), 2,
         "--batch-size must be between"),
    Case("batch-size-minus-1", _privatize(GOOD, "--e-px", "10", "--batch-size", "-1"), 2,
         "--batch-size must be between"),
    Case("e-px-1e18-tight", _privatize(GOOD, "--e-px", "1e18", "--mode", "tight"), 2,
         "cannot be released"),
    Case("e-px-1e18-paper-is-representable",
         _privatize(GOOD, "--e-px", "1e18", "--mode", "paper"), 0, ""),
    Case("e-px-1e18-fitted", _privatize(GOOD, "--e-px", "1e18"), 2, "cannot be released"),
    Case("e-px-1e308", _privatize(GOOD, "--e-px", "1e308"), 2, "cannot be released"),
    Case("e-px-1e-12", _privatize(GOOD, "--e-px", "1e-12"), 2, "cannot be released"),
    Case("e-px-nan", _privatize(GOOD, "--e-px", "nan"), 2, "is not a number"),
    Case("e-px-negative", _privatize(GOOD, "--e-px", "-5"), 2, "is not positive"),
    Case("e-px-not-a-number", _privatize(GOOD, "--e-px", "lots"), 2, "is not a number"),
    Case("patient-budget-nan", _privatize(GOOD, "--e-px", "10", "--patient-budget", "nan"), 2,
         "positive finite"),
    Case("patient-budget-negative", _privatize(GOOD, "--e-px", "10", "--patient-budget", "-1"),
         2, "positive finite"),
    Case("patient-budget-text", _privatize(GOOD, "--e-px", "10", "--patient-budget", "x"), 2,
         "invalid float value"),
    Case("format-bogus", _privatize(GOOD, "--e-px", "10", "--format", "jpeg2000"), 2,
         "invalid choice"),
    Case("alpha-0", _privatize(GOOD, "--e-px", "10", "--alpha", "0"), 2, "alpha must be in"),
    Case("unknown-option", _privatize(GOOD, "--e-px", "10", "--frobnicate"), 2,
         "unrecognized arguments"),
    # ---- ledgers
    Case("ledger-typo", lambda c, t: ["ledger", t / "typo.sqlite"], 2, "there is no ledger"),
    Case("ledger-garbage", lambda c, t: ["ledger", c / "garbage.sqlite"], 2,
         "cannot use the privacy ledger"),
    Case("ledger-newer", lambda c, t: ["ledger", c / "newer.sqlite"], 2, "newer version"),
    Case("ledger-is-a-folder", _privatize(GOOD, "--e-px", "10", ledger=_c("notes")), 2,
         "cannot use the privacy ledger"),
    Case("ledger-under-proc", _privatize(GOOD, "--e-px", "10",
                                         ledger="/proc/dpglow-test/l.sqlite"), 2,
         "cannot use the privacy ledger"),
    Case("ledger-foreign-sqlite", _privatize(GOOD, "--e-px", "10", ledger=_c("foreign.sqlite")),
         2, "not a privacy ledger"),
    Case("ledger-tampered", _privatize(GOOD, "--e-px", "10", ledger=_c("tampered.sqlite")), 2,
         "does not verify: release 1 was changed (total_epsilon)"),
    Case("ledger-verify-tampered", lambda c, t: ["ledger", c / "tampered.sqlite", "--verify"],
         2, "does not verify"),
    Case("set-budget-nan", lambda c, t: ["ledger", t / "l.sqlite", "--set-patient-budget",
                                         "nan"], 2, "positive finite"),
    Case("set-budget-negative", lambda c, t: ["ledger", t / "l.sqlite", "--set-patient-budget",
                                              "-3"], 2, "positive finite"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, corpus: Corpus, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    if case.id == "device-cuda-without-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if "proc" in case.id and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    with warnings.catch_warnings(record=True) as caught:  # pydicom's, NumPy's: none leak
        warnings.simplefilter("always")
        code, out, err = cli(capsys, *case.argv(corpus, tmp_path))
    assert [str(w.message) for w in caught] == []
    assert_clean_answer(corpus, tmp_path, code, out, err, case.code, case.fragment)
    assert not (tmp_path / "typo.sqlite").exists()  # a report never invents a ledger


def test_budget_raised_above_the_stored_one_needs_force(corpus, tmp_path, capsys) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        led.set_patient_budget(2e6)
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good", "--e-px",
                                                 "10", "--patient-budget", "1e12"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 2, "may only lower it")
    for argv in (["--set-patient-budget", "3e6"], ["--clear-patient-budget"]):
        code, out, err = cli(capsys, "ledger", tmp_path / "ledger.sqlite", *argv)
        assert_clean_answer(corpus, tmp_path, code, out, err, 2, "needs --force")
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert led.patient_budget == 2e6


def test_zero_byte_file_at_an_output_name_is_released_again(corpus, tmp_path, capsys) -> None:
    argv = privatize_args(corpus, tmp_path, corpus / "good", "--e-px", "10")
    assert cli(capsys, *argv)[0] == 0
    first = records.read_rows(tmp_path / "out" / "manifest.csv")
    (tmp_path / "out" / first[0]["file"]).write_bytes(b"")
    code, out, err = cli(capsys, *argv)
    assert code == 0 and err.startswith("warning: 1 image(s) had no patient id")
    assert "written 1, done earlier 1" in out
    assert len(records.read_rows(tmp_path / "out" / "manifest.csv")) == 3
    (tmp_path / "out" / first[0]["file"]).unlink()  # the planted empty file is ours
    assert_untouched(corpus, tmp_path)


def test_read_only_output_folder(corpus, tmp_path, capsys) -> None:
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        try:
            (out / "probe").touch()
        except PermissionError:
            pass
        else:  # root writes anyway: nothing to test here
            (out / "probe").unlink()
            pytest.skip("running as root: a read-only folder is still writable")
        code, stdout, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good",
                                                        "--e-px", "10", out=out))
        assert_clean_answer(corpus, tmp_path, code, stdout, err, 2,
                            "cannot write into the output folder")
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize("where", ["manifest", "record"])
def test_record_path_that_is_a_folder_is_refused_first(corpus, tmp_path, capsys,
                                                       where: str) -> None:
    target = (tmp_path / "out" / "manifest.csv" if where == "manifest"
              else tmp_path / "ledger.record.csv")
    target.mkdir(parents=True)
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good", "--e-px",
                                                 "10"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 2, "is not a regular file")
    assert list((tmp_path / "out").glob("*.png")) == []  # refused before anything was spent


def test_old_manifest_in_out_is_refused(corpus, tmp_path, capsys) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.csv").write_text("input,output,status\n/SMITH/a.png,x,ok\n")
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good", "--e-px",
                                                 "10"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 2, "not written by this version")


def test_manifest_write_failure_is_reported_after_the_failures(corpus, tmp_path, capsys,
                                                              monkeypatch) -> None:
    class FullDisk:
        """os, except that writes fail as on a full disk."""

        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def write(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records, "os", FullDisk())
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good",
                                                 corpus / "bad" / "empty.png", "--e-px", "10",
                                                 "--batch-size", "4"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 1, "No space left on device")
    lines = err.splitlines()
    assert all(line.startswith("failed:") for line in lines[:-1]) and "empty.png" in err
    assert lines[-1].startswith("error: cannot write the operator's record")
    # the record could not say what was about to be released: nothing was drawn or spent
    assert err.count("nothing was spent") == 2 and not list((tmp_path / "out").glob("*.png"))
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert {row["status"] for row in led.releases()} == {"cancelled"}


def run_isolated(*argv: object) -> subprocess.CompletedProcess[str]:
    """`dpglow ARGV` in a child process: a hang fails (TimeoutExpired) instead of blocking."""
    try:
        return subprocess.run([sys.executable, "-m", "glow_engine.cli", *map(str, argv)],
                              capture_output=True, text=True, timeout=DEADLINE_S,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        pytest.fail(f"dpglow {argv[0]} hung on a named pipe or device (no answer in "
                    f"{DEADLINE_S} s)")


def test_pipes_devices_and_link_loops_in_a_folder_are_skipped(corpus, tmp_path) -> None:
    done = run_isolated(*privatize_args(corpus, tmp_path, corpus / "hang", "--e-px", "10"))
    assert_clean_answer(corpus, tmp_path, done.returncode, done.stdout, done.stderr, 1,
                        "named pipe")
    skipped = {Path(line.split(": ")[1]).name: line for line in done.stderr.splitlines()
               if line.startswith("skipped:")}
    assert set(skipped) == {"pipe.png", "pipe", "zero.png", "loop.png"}
    assert "a device" in skipped["zero.png"] and "link loop" in skipped["loop.png"]
    assert "written 1" in done.stdout and "skipped 4" in done.stdout


def test_a_pipe_or_device_named_on_the_command_line_is_refused(corpus, tmp_path,
                                                               anomaly_model_dirs) -> None:
    done = run_isolated(*privatize_args(corpus, tmp_path, corpus / "hang" / "pipe.png",
                                        corpus / "hang" / "zero.png", "--e-px", "10"))
    assert_clean_answer(corpus, tmp_path, done.returncode, done.stdout, done.stderr, 1,
                        "not a regular file")
    assert done.stderr.count("failed:") == 2
    normal, mixture = anomaly_model_dirs
    done = run_isolated("score", corpus / "hang" / "pipe.png", corpus / "hang" / "zero.png",
                        corpus / "hang" / "good.png", "--normal", normal, "--mixture", mixture)
    assert_clean_answer(corpus, tmp_path, done.returncode, done.stdout, done.stderr, 1,
                        "not a regular file")
    assert done.stderr.count("error:") == 2 and "good.png" in done.stdout


# --------------------------------------------------------------------------- private files


@pytest.mark.parametrize("where", ["in-out", "in-a-subfolder-of-out", "out-is-its-folder",
                                   "linked-into-out"])
def test_a_ledger_record_or_report_inside_out_is_refused(corpus, tmp_path, capsys,
                                                         where: str) -> None:
    """The ledger's folder holds the operator's record and reports: publishing OUT must never
    publish them, however the path is spelled."""
    out = tmp_path / "out"
    ledger = {"in-out": out / "privacy.sqlite",
              "in-a-subfolder-of-out": out / "private" / "l.sqlite",
              "out-is-its-folder": tmp_path / "released" / "l.sqlite",
              "linked-into-out": tmp_path / "link" / "l.sqlite"}[where]
    if where == "out-is-its-folder":
        out = ledger.parent
    if where == "linked-into-out":
        (out / "hidden").mkdir(parents=True)
        (tmp_path / "link").symlink_to(out / "hidden")
    code, stdout, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good",
                                                    "--e-px", "10", out=out, ledger=ledger))
    assert_clean_answer(corpus, tmp_path, code, stdout, err, 2, "inside the output folder")
    assert not ledger.exists() and not list(tmp_path.rglob("*.png"))
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("*.html"))


def test_release_one_refuses_a_ledger_inside_out(corpus, tmp_path) -> None:
    """The window's export goes through release_one: the engine itself refuses."""
    mech = create_mechanism("dpglow", load_model(corpus / "model"), mode="paper", alpha=0.4)
    item = ReleaseInput.from_image(load_image(corpus / "good" / "a.png"), mech.resolution)
    with Ledger(tmp_path / "out" / "l.sqlite") as led, \
            pytest.raises(UserError, match="inside the output folder"):
        release_one(item, mech, led, ReleaseOptions(e_px=10, out_dir=tmp_path / "out"))
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.csv"))


# --------------------------------------------------------------------------- strict decoding
# Every way found for a decoder to return fewer rows, garbage or NaN without an error: each
# file is refused with its reason, never released.


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(rows: bytes, width: int = 32, height: int = 32, interlace: int = 0,
         crc_ok: bool = True) -> bytes:
    idat = _chunk(b"IDAT", zlib.compress(rows))
    if not crc_ok:
        idat = idat[:-4] + bytes(4)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, interlace))
            + idat + _chunk(b"IEND", b""))


def _rows(n: int, width: int = 32) -> bytes:
    return b"".join(b"\x00" + bytes([100 + i % 100]) * width for i in range(n))


def _jpeg(pixels: np.ndarray, **kw: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels)).save(buffer, format="JPEG", quality=95, **kw)
    return buffer.getvalue()


def _sof(jpeg: bytes, marker: int) -> bytes:
    at = jpeg.index(b"\xff\xc0")
    return jpeg[:at + 1] + bytes([marker]) + jpeg[at + 2:]


def _damage_scan(jpeg: bytes, how: str) -> bytes:
    scan = jpeg.index(b"\xff\xda") + 40
    return {"dropped": jpeg[:scan] + jpeg[scan + 300:],
            "ff-run": jpeg[:scan] + b"\xff" * 50 + jpeg[scan + 50:],
            "cut-closed": jpeg[:len(jpeg) // 3] + b"\xff\xd9",
            "cut": jpeg[:len(jpeg) // 3]}[how]


def _image(seed: int = 3) -> np.ndarray:
    return tiny_images(1, seed=seed, size=64)[0]


def _bytes_file(data: bytes, suffix: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / f"case{suffix}"
        path.write_bytes(data)
        return path
    return build


def _dicom(**change: object) -> Callable[[Path], Path]:
    """A native 8-bit DICOM, its header then changed (values written as given)."""
    def build(folder: Path) -> Path:
        path = write_dicom(folder / "case.dcm", _image())
        ds = pydicom.dcmread(path)
        with warnings.catch_warnings():  # pydicom warns as it takes "NaN" as a DS
            warnings.simplefilter("ignore")
            for keyword, value in change.items():
                if keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter",
                               "WindowWidth"):
                    ds.add_new(pydicom.datadict.tag_for_keyword(keyword), "DS", value)
                else:
                    setattr(ds, keyword, value)
            ds.save_as(path)
        return path
    return build


def _jpeg_dicom(codestream: Callable[[bytes], bytes], syntax: str = JPEGBaseline8Bit,
                native: bool = False) -> Callable[[Path], Path]:
    """A DICOM holding `codestream(a good JPEG)` encapsulated, under `syntax` (or, with
    `native`, under Explicit VR Little Endian as if it were not compressed)."""
    def build(folder: Path) -> Path:
        path = write_dicom(folder / "case.dcm", _image())
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([codestream(_jpeg(_image()))])
        ds["PixelData"].VR = "OB"
        if not native:
            ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
        return path
    return build


def _tiff_jpeg(folder: Path) -> Path:
    """A JPEG-compressed TIFF whose scan has a run of 0xFF: libtiff decodes it to garbage."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(_image())).save(buffer, format="TIFF", compression="jpeg")
    (folder / "case.tif").write_bytes(_damage_scan(buffer.getvalue(), "ff-run"))
    return folder / "case.tif"


def _tiff_float(folder: Path) -> Path:
    arr = _image().copy()
    arr[3, 3] = np.nan
    Image.fromarray(arr, mode="F").save(folder / "case.tif")
    return folder / "case.tif"


STRICT = {
    "png-idat-half-the-rows": (_bytes_file(_png(_rows(16)), ".png"), "incomplete"),
    "png-idat-extra-rows": (_bytes_file(_png(_rows(48)), ".png"), "incomplete"),
    "png-interlaced-short": (_bytes_file(_png(_rows(40), interlace=1), ".png"), "incomplete"),
    "png-idat-bad-crc": (_bytes_file(_png(_rows(32), crc_ok=False), ".png"), "corrupt"),
    "jpeg-sof9-on-huffman-data": (_bytes_file(_sof(_jpeg(_image()), 0xC9), ".jpg"),
                                  "arithmetic"),
    "jpeg-sof3-lossless": (_bytes_file(_sof(_jpeg(_image()), 0xC3), ".jpg"), "lossless"),
    "jpeg-sof5-hierarchical": (_bytes_file(_sof(_jpeg(_image()), 0xC5), ".jpg"),
                               "differential"),
    "jpeg-scan-ff-run": (_bytes_file(_damage_scan(_jpeg(_image()), "ff-run"), ".jpg"),
                         "damaged"),
    "jpeg-scan-dropped": (_bytes_file(_damage_scan(_jpeg(_image()), "dropped"), ".jpg"),
                          "damaged"),
    "jpeg-cut-and-closed": (_bytes_file(_damage_scan(_jpeg(_image()), "cut-closed"), ".jpg"),
                            "damaged"),
    "tiff-float-nan": (_tiff_float, "NaN"),
    "tiff-jpeg-damaged": (_tiff_jpeg, "JPEG-compressed TIFF is not supported"),
    "dicom-rows-smaller-than-data": (_dicom(Rows=48), "does not match"),
    "dicom-columns-smaller-than-data": (_dicom(Columns=40), "does not match"),
    "dicom-rows-larger-than-data": (_dicom(Rows=80), "truncated"),
    "dicom-encapsulated-under-native": (_jpeg_dicom(lambda j: j, native=True), "encapsulated"),
    "dicom-jpeg-fragment-cut": (_jpeg_dicom(lambda j: _damage_scan(j, "cut")), "truncated"),
    "dicom-jpeg-cut-and-closed": (_jpeg_dicom(lambda j: _damage_scan(j, "cut-closed")),
                                  "damaged"),
    "dicom-jpeg-scan-dropped": (_jpeg_dicom(lambda j: _damage_scan(j, "dropped")), "damaged"),
    "dicom-jpeg-scan-ff-run": (_jpeg_dicom(lambda j: _damage_scan(j, "ff-run")), "damaged"),
    "dicom-jpeg-sof9": (_jpeg_dicom(lambda j: _sof(j, 0xC9)), "arithmetic"),
    "dicom-jpeg-progressive-under-baseline": (_jpeg_dicom(lambda j: _sof(j, 0xC2)),
                                              "progressive"),
    "dicom-jpeg-size-differs-from-header": (
        _jpeg_dicom(lambda j: _jpeg(np.zeros((64, 48), np.float32))), "header says"),
    "dicom-jpeg-lossless-syntax-with-baseline-data": (
        _jpeg_dicom(lambda j: j, syntax="1.2.840.10008.1.2.4.70"), "baseline"),
    "dicom-rescale-slope-nan": (_dicom(RescaleSlope="NaN", RescaleIntercept="0"),
                                "RescaleSlope is not a finite"),
    "dicom-rescale-slope-1e400": (_dicom(RescaleSlope="1e400", RescaleIntercept="0"),
                                  "RescaleSlope is not a finite"),
    "dicom-rescale-intercept-inf": (_dicom(RescaleSlope="1", RescaleIntercept="-inf"),
                                    "RescaleIntercept is not a finite"),
    "dicom-rescale-overflows": (_dicom(RescaleSlope="1e307", RescaleIntercept="-1e308"),
                                "overflow"),
}


@pytest.mark.parametrize("case", list(STRICT), ids=list(STRICT))
def test_what_cannot_be_decoded_faithfully_is_refused(case: str, tmp_path: Path) -> None:
    build, reason = STRICT[case]
    path = build(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageLoadError, match=reason):
            load_image(path)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("window", [("NaN", "100"), ("100", "NaN"), ("inf", "100"),
                                    ("100", "1e400"), ("100", "0")])
def test_an_unusable_window_is_ignored_never_nan(window: tuple[str, str], tmp_path) -> None:
    plain = load_image(_dicom()(tmp_path)).pixels
    odd = load_image(_dicom(WindowCenter=window[0], WindowWidth=window[1])(tmp_path)).pixels
    assert np.isfinite(odd).all() and np.array_equal(odd, plain)


def test_white_is_zero_tiff_is_shown_dense_bright_at_every_depth(tmp_path: Path) -> None:
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    for dtype, top in ((np.uint16, 65535), (np.uint8, 255)):
        stored = np.rint(ramp * top).astype(dtype)
        Image.fromarray(stored).save(tmp_path / "black.tif")
        Image.fromarray(stored).save(tmp_path / "white.tif", tiffinfo={262: 0})
        black, white = (load_image(tmp_path / f"{n}.tif").pixels for n in ("black", "white"))
        raw = np.asarray(Image.open(tmp_path / "white.tif"))
        expected = 1 - raw / top if dtype == np.uint16 else raw / top  # Pillow inverts 8-bit
        assert np.abs(white - expected).max() < 1e-6, dtype
        assert np.abs(black - stored / top).max() < 1e-6


def test_good_jpegs_pass_the_strict_checks(tmp_path: Path) -> None:
    """The checks refuse damage, not JPEG: grey, colour at each subsampling, progressive."""
    image = _image()
    colour = np.stack([image, image * 0.8, 1 - image], axis=-1)
    for name, pixels, kw in (("grey", image, {}), ("progressive", image, {"progressive": True}),
                             *((f"colour-{s}", colour, {"subsampling": s}) for s in (0, 1, 2))):
        (tmp_path / f"{name}.jpg").write_bytes(_jpeg(pixels, **kw))
        assert load_image(tmp_path / f"{name}.jpg").pixels.shape == (64, 64), name
    assert load_image(_jpeg_dicom(lambda j: j)(tmp_path)).pixels.shape == (64, 64)


def test_a_strictly_refused_image_is_not_released(corpus, tmp_path, capsys) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    STRICT["png-idat-half-the-rows"][0](bad)
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, bad / "case.png", "--e-px",
                                                 "10"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 1, "incomplete")
    assert not list(tmp_path.rglob("*.png"))[1:]  # only the input itself


# --------------------------------------------------------------------------- crash consistency
# A run killed (SIGKILL) at each step of a release; the next run must settle what it left:
# no hidden temporary file, every file in OUT listed, no reservation left open, and no source
# released twice.

KILLER = """
import os, re, signal, sys
from glow_engine import atomic, cli
from glow_engine.release import ledger, records

point, argv = sys.argv[1], sys.argv[2:]
calls = []


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def on_call(owner, name, when):
    real = getattr(owner, name)

    def wrapped(*args, **kw):
        if when(*args, **kw):
            calls.append(name)
            if len(calls) == 2:  # the second release: the first one is complete
                die()
        return real(*args, **kw)
    setattr(owner, name, wrapped)


if point == "during-write":  # the release's temporary file exists, not yet moved into place
    on_call(atomic, "_fsync", lambda tmp: re.match(r"\\.[0-9a-f]{16}\\.png\\.", tmp.name))
elif point == "before-confirm":  # the file is in place, the ledger still says reserved
    on_call(ledger.Ledger, "confirm", lambda self, release_id: True)
elif point == "before-listing":  # confirmed, but no manifest or record row yet
    on_call(records, "append_rows", lambda path, fields, rows, what:
            what == "published manifest" and rows)
elif point == "between-listings":  # in the manifest, but no final record row yet
    appends = []

    def final_record_row(path, fields, rows, what):
        appends.append(what)  # each release: its reserved row, then its final row
        return what == "operator's record" and appends.count(what) % 2 == 0
    on_call(records, "append_rows", final_record_row)
sys.exit(cli.main(argv))
"""


@pytest.mark.slow  # a child process killed, then a run, for each point
@pytest.mark.parametrize("point", ["during-write", "before-confirm", "before-listing",
                                   "between-listings"])
def test_a_killed_run_is_settled_by_the_next_one(corpus, tmp_path, capsys, point: str) -> None:
    sources = tmp_path / "in"
    for index, pixels in enumerate(tiny_images(3, seed=7)):
        write_png(sources / f"{index}.png", pixels)
    argv = privatize_args(corpus, tmp_path, sources, "--e-px", "10", "--batch-size", "1")
    killed = subprocess.run([sys.executable, "-c", KILLER, point, *map(str, argv)],
                            capture_output=True, text=True, timeout=DEADLINE_S,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert killed.returncode == -9, killed.stderr
    out = tmp_path / "out"
    left = sorted(p.name for p in out.iterdir())
    if point == "during-write":
        assert any(name.endswith(".tmp") for name in left)  # what the crash left
    elif point != "between-listings":
        assert len(records.read_rows(out / "manifest.csv")) < len(list(out.glob("*.png")))
    code, stdout, err = cli(capsys, *argv)
    assert code == 0, err
    assert "settled 1" in stdout
    files = sorted(p.name for p in out.iterdir())
    manifest = records.read_rows(out / "manifest.csv")
    assert files == sorted([row["file"] for row in manifest] + ["manifest.csv"])  # all listed
    assert len(manifest) == 3  # one release per source: none twice
    record = records.read_rows(tmp_path / "ledger.record.csv")
    written = [row["source_sha256"] for row in record if row["status"] == "written"]
    assert sorted(written) == sorted(set(written)) and len(written) == 3
    with Ledger(tmp_path / "ledger.sqlite") as led:
        statuses = [row["status"] for row in led.releases()]
    assert "reserved" not in statuses and statuses.count("written") == 3
    assert statuses.count("failed") == (point == "during-write")  # the draw may have happened
    assert not list((tmp_path / "ledger.runs").iterdir())  # every run's lock file is gone


# --------------------------------------------------------------------------- names and lists


def test_file_and_folder_names_that_are_not_utf8(corpus, tmp_path, capsys) -> None:
    if sys.platform == "win32" or sys.getfilesystemencoding() != "utf-8":
        pytest.skip("needs a POSIX file system that takes any bytes as a name")
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/in\xff\xfe"))
    write_png(folder / os.fsdecode(b"r\xe9sum\xe9.png"), tiny_images(1, seed=3)[0])
    shutil.copy(corpus / "good" / "a.png", folder / "plain.png")
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, folder, "--e-px", "10"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 0, "")
    assert "written 2" in out
    rows = records.read_rows(tmp_path / "ledger.record.csv")
    assert sum(row["status"] == "written" for row in rows) == 2  # the record stays readable
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, folder, "--e-px", "10"))
    assert code == 0 and "done earlier 2" in out  # and a re-run finds both


@pytest.mark.parametrize("content", [b"path\ngood/a.png\nbad\x00name.png\n",
                                     b"path,patient_id\ngood/a.png,P\x001\n",
                                     b"\x00\x00\x00\x00"])
def test_a_csv_list_with_a_nul_byte_is_one_clear_error(corpus, tmp_path, capsys,
                                                       content: bytes) -> None:
    listing = tmp_path / "list.csv"
    listing.write_bytes(content)
    shutil.copytree(corpus / "good", tmp_path / "good")
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, listing, "--e-px", "10"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 2, "NUL")


# --------------------------------------------------------------------------- guarded reads
# Every file the program reads goes through one guarded open (glow_engine.reading): a named
# pipe in place of any of them is one clear error, never a hang.


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.slow  # nine child processes, each importing torch
def test_a_named_pipe_in_place_of_any_input_file_is_refused(corpus, tmp_path) -> None:
    pipes = tmp_path / "pipes"
    model_dir = Path(shutil.copytree(corpus / "model", pipes / "model_dir"))
    (model_dir / "weights.safetensors").unlink()
    _fifo(model_dir / "weights.safetensors")
    ledger_with_pipe_key = pipes / "keyed" / "ledger.sqlite"
    Ledger(ledger_with_pipe_key).close()
    (pipes / "keyed" / "ledger.key.json").unlink()
    _fifo(pipes / "keyed" / "ledger.key.json")
    good = corpus / "good"
    private = tmp_path / "private"
    runs = {
        "csv list": ["privatize", _fifo(pipes / "list.csv"), "--e-px", "10", "--out",
                     tmp_path / "out", "--ledger", private / "l.sqlite", "--no-progress"],
        "model file": ["info", _fifo(pipes / "model.safetensors")],
        "model folder": ["info", model_dir],
        "privatize --model": ["privatize", good, "--e-px", "10", "--model",
                              pipes / "model.safetensors", "--out", tmp_path / "out",
                              "--ledger", private / "l.sqlite", "--no-progress"],
        "ledger": ["ledger", _fifo(pipes / "ledger.sqlite")],
        "ledger key file": ["ledger", ledger_with_pipe_key],
        "calibration image set": ["calibrate", corpus / "model", "--out", pipes / "m2",
                                  "--data", _fifo(pipes / "set.npz")],
        "calibration image list": ["calibrate", corpus / "model", "--out", pipes / "m3",
                                   "--data", _fifo(pipes / "set.csv")],
    }
    for what, argv in runs.items():
        done = run_isolated(*argv)
        assert done.returncode == 2, (what, done.stderr)
        assert len(done.stderr.splitlines()) == 1, (what, done.stderr)
        assert "not a regular file" in done.stderr and "Traceback" not in done.stderr, what
    nodes = subprocess.run(
        [sys.executable, "-c", "import sys; from glow_engine.pacs.nodes import load_nodes; "
         "from pathlib import Path\ntry: load_nodes(Path(sys.argv[1]))\n"
         "except Exception as e: print(type(e).__name__, e)", _fifo(pipes / "nodes.toml")],
        capture_output=True, text=True, timeout=DEADLINE_S)
    assert nodes.stdout.startswith("PacsError") and "not a regular file" in nodes.stdout
    shipped = subprocess.run(  # the risk card and validation scores beside a model pair
        [sys.executable, "-c", "import sys\nfrom glow_engine.risk_card import read_risk_card\n"
         "from glow_engine.validation_scores import read_validation_scores\n"
         "for read in (read_risk_card, read_validation_scores):\n"
         "    try: read(sys.argv[1])\n    except OSError as e: print(e)",
         _fifo(pipes / "risk_card.json")], capture_output=True, text=True, timeout=DEADLINE_S)
    assert shipped.stdout.count("not a regular file") == 2, shipped.stderr


# --------------------------------------------------------------------------- torchrun


def test_a_stray_rank_never_skips_inputs(corpus, tmp_path) -> None:
    env = {"RANK": "1", "WORLD_SIZE": "2"}  # left in a shell; torchrun did not start us
    done = subprocess.run([sys.executable, "-m", "glow_engine.cli",
                           *map(str, privatize_args(corpus, tmp_path, corpus / "good",
                                                    "--e-px", "10"))],
                          capture_output=True, text=True, timeout=DEADLINE_S,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **env))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: ignoring RANK=1 WORLD_SIZE=2")
    assert "written 2" in done.stdout  # both inputs, not every other one


def test_a_torchrun_rank_whose_partners_never_come_gets_a_deadline(corpus, tmp_path) -> None:
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517", "TORCHELASTIC_RUN_ID": "t",
           "DPGLOW_RENDEZVOUS_TIMEOUT": "5"}
    done = subprocess.run([sys.executable, "-m", "glow_engine.cli",
                           *map(str, privatize_args(corpus, tmp_path, corpus / "good",
                                                    "--e-px", "10"))],
                          capture_output=True, text=True, timeout=DEADLINE_S,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **env))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: the torchrun ranks did not all join within 5 s")
    assert_untouched(corpus, tmp_path)


# --------------------------------------------------------------------------- smaller things


@pytest.mark.parametrize("why", ["every-input-fails", "record-unwritable", "budget-refused"])
def test_a_failing_run_leaves_no_output_folder_it_made(corpus, tmp_path, capsys,
                                                       why: str) -> None:
    out = tmp_path / "new" / "deeper" / "out"
    inputs = corpus / "good"
    if why == "every-input-fails":
        inputs = corpus / "bad" / "empty.png"
    elif why == "record-unwritable":
        (tmp_path / "ledger.record.csv").mkdir()
    else:
        with Ledger(tmp_path / "ledger.sqlite") as led:
            led.set_patient_budget(1)
    code, _, err = cli(capsys, *privatize_args(corpus, tmp_path, inputs, "--e-px", "10",
                                               out=out))
    assert code in (1, 2) and "Traceback" not in err
    assert not (tmp_path / "new").exists()  # neither OUT nor the folders made for it


def test_an_existing_output_folder_is_kept_when_a_run_fails(corpus, tmp_path, capsys) -> None:
    (tmp_path / "out").mkdir()
    code, _, _ = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "bad" / "empty.png",
                                             "--e-px", "10"))
    assert code == 1 and (tmp_path / "out").is_dir()


def test_an_empty_out_and_a_resolution_dpglow_ignores_are_refused(corpus, tmp_path, capsys,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good", "--e-px",
                                                 "10", out=" "))
    assert_clean_answer(corpus, tmp_path, code, out, err, 2, "not an output folder")
    argv = privatize_args(corpus, tmp_path, corpus / "good", "--e-px", "10")
    argv[argv.index("--out") + 1] = ""  # privatize_args would read "" as its default
    code, out, err = cli(capsys, *argv)
    assert_clean_answer(corpus, tmp_path, code, out, err, 2, "not an output folder")
    assert not list(tmp_path.glob("*.png"))  # nothing in the current folder
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, corpus / "good", "--e-px",
                                                 "10", "--resolution", "64"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 2, "--resolution applies to")


def test_a_library_warning_is_a_refusal_or_one_line(corpus, tmp_path, capsys) -> None:
    """Pillow warns (twice, in two lines each) about an EXIF block it cannot read, skipping
    the orientation: the image is refused with the reason in one line."""
    jpeg = _jpeg(_image())
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x12\x01\x03\x00" * 3
    segment = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "exif.jpg").write_bytes(jpeg[:2] + segment + jpeg[2:])
    code, out, err = cli(capsys, *privatize_args(corpus, tmp_path, tmp_path / "in", "--e-px",
                                                 "10"))
    assert_clean_answer(corpus, tmp_path, code, out, err, 1, "cannot be read faithfully")
    net = subprocess.run(  # the CLI's safety net for a warning no check turned into an error
        [sys.executable, "-c", "import sys, warnings; from glow_engine import cli; "
         "from glow_engine.commands import info; "
         "info.run = lambda args: warnings.warn('a library\\'s\\nwarning') or 0; "
         "sys.exit(cli.main(['info', 'x']))"], capture_output=True, text=True,
        timeout=DEADLINE_S)
    assert net.returncode == 0 and net.stderr == "warning: a library's warning\n"
