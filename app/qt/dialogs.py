"""Read-only dialogs: the DICOM tag browser, a release report, the model information, the
documents and About."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import PySide6
from PySide6.QtCore import QSize, Qt, QUrl, qVersion
from PySide6.QtGui import QDesktopServices, QImage, QTextDocument
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import ModelsInfo
from app.qt.widgets import fit_to_screen
from glow_engine import __version__
from glow_engine.resources import resources_root, user_text

MAX_VALUE_CHARS = 200  # long values (LUTs, overlays) are cut: this is a browser, not an editor


class TagBrowser(QDialog):
    """Every element of the open DICOM header (pixel data already dropped by the loader),
    sequences as sub-trees, with a filter over tag, name and value."""

    def __init__(self, dataset, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"DICOM tags — {title}")
        fit_to_screen(self, QSize(760, 560))
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by tag, name or value…")
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Tag", "Name", "VR", "Value"])
        self.tree.setAlternatingRowColors(True)
        _add_elements(self.tree.invisibleRootItem(), [*dataset.file_meta, *dataset]
                      if getattr(dataset, "file_meta", None) else list(dataset))
        for column in range(3):
            self.tree.resizeColumnToContents(column)
        self.filter.textChanged.connect(self._apply_filter)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree)
        layout.addWidget(buttons)

    def _apply_filter(self, text: str) -> None:
        text = text.lower()
        root = self.tree.invisibleRootItem()
        for i in range(root.childCount()):
            item = root.child(i)
            keyword = str(item.data(0, Qt.ItemDataRole.UserRole) or "").lower()
            shown = text in keyword or any(text in item.text(c).lower() for c in range(4))
            item.setHidden(bool(text) and not shown)


def _add_elements(parent: QTreeWidgetItem, elements) -> None:
    for elem in elements:
        if elem.VR == "SQ":
            item = QTreeWidgetItem(parent, [str(elem.tag), elem.name, "SQ",
                                            f"{len(elem.value)} item(s)"])
            item.setData(0, Qt.ItemDataRole.UserRole, elem.keyword)
            for n, ds in enumerate(elem.value, 1):
                sub = QTreeWidgetItem(item, ["", f"Item {n}", "", ""])
                _add_elements(sub, list(ds))
            continue
        value = elem.repval if elem.tag.group == 0x7FE0 else str(elem.value)
        if len(value) > MAX_VALUE_CHARS:
            value = value[:MAX_VALUE_CHARS] + "…"
        item = QTreeWidgetItem(parent, [str(elem.tag), elem.name, str(elem.VR), value])
        item.setData(0, Qt.ItemDataRole.UserRole, elem.keyword)  # "PatientName" finds it too


class _Reading(QDialog):
    """A titled page of rich text with a Close button (the base of the dialogs below)."""

    def __init__(self, title: str, size: tuple[int, int], parent: QWidget | None,
                 text: QTextBrowser | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        fit_to_screen(self, QSize(*size))
        self.text = text or QTextBrowser()
        self.text.setOpenExternalLinks(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)


class ReleaseReport(_Reading):
    """A release report shown inside the program (it needs no browser: a workstation may have
    none registered), with its path, a button that opens it in the browser and one that
    opens its folder; each says so when the system cannot open it."""

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        super().__init__("Release report", (900, 760), parent)
        self.path = Path(path)
        try:
            self.text.setHtml(self.path.read_text(encoding="utf-8"))
        except OSError as e:
            self.text.setPlainText(f"The release report cannot be read: {e.strerror or e}.")
        self.where = QLabel(f"Saved at: {self.path}")
        self.where.setWordWrap(True)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.browser_button = QPushButton("Open in the web browser")
        self.folder_button = QPushButton("Open its folder")
        self.browser_button.clicked.connect(lambda: self._open(self.path, "the browser"))
        self.folder_button.clicked.connect(lambda: self._open(self.path.parent, "its folder"))
        row = QHBoxLayout()
        row.addWidget(self.where, 1)
        row.addWidget(self.browser_button)
        row.addWidget(self.folder_button)
        self.layout().insertLayout(1, row)

    def _open(self, path: Path, what: str) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            self.where.setText(f"This system could not open {what}. The report is saved at: "
                               f"{self.path}")


class ModelInfo(_Reading):
    """What the privacy depends on: which model, its hash, calibration and training data."""

    def __init__(self, info: ModelsInfo, parent: QWidget | None = None) -> None:
        super().__init__("Model information", (720, 620), parent)
        self.text.setMarkdown(model_markdown(info))


def model_markdown(info: ModelsInfo) -> str:
    parts = [
        "# Models",
        f"- **Device:** {info.device}",
        f"- **Resolution:** {info.resolution} × {info.resolution} "
        f"(total ε = e_px × {info.resolution ** 2:,})",
        "",
        _one_model("Mixture model M (privatises; anomaly score)", info.mixture_path,
                   info.mixture_meta),
    ]
    if info.normal_path is not None:
        parts.append(_one_model("Normal-only model N (anomaly score)", info.normal_path,
                                info.normal_meta))
    else:
        parts.append("## Normal-only model N\nNot loaded: no anomaly score.")
    return "\n".join(parts)


def _one_model(title: str, path: Path, meta: dict) -> str:
    lines = [f"## {title}", f"- **Path:** `{path}`", f"- **sha256:** `{meta.get('sha256', '?')}`"]
    arch = meta.get("architecture", {})
    if arch:
        lines.append("- **Architecture:** " + ", ".join(f"{k} {v}" for k, v in arch.items()))
    for key, label in (("data", "Training data"), ("validation", "Validation"),
                       ("calibration", "Calibration"),
                       ("fitted_box", "Fitted clip boxes (DP-GLOW's fitted box)")):
        if key in meta:
            lines.append(f"- **{label}:** `{json.dumps(meta[key], default=str)[:600]}`")
    card = Path(path) / "MODEL_CARD.md"
    if card.is_file():
        lines += ["", "### Model card", "", card.read_text(errors="replace")]
    return "\n".join(lines) + "\n"


class Document(_Reading):
    """A Markdown document from docs/ (the privacy notes, the evaluation), with its pictures:
    the bundle has no other way to show them to the person deciding on a budget."""

    def __init__(self, title: str, path: Path, parent: QWidget | None = None,
                 preface: str = "") -> None:
        """`preface`: rich text shown above the document (the privacy notes open with what
        the budget on screen means)."""
        super().__init__(title, (920, 780), parent, _FittingBrowser())
        # The folder's file URL as the base, so that relative image paths (img/...) resolve
        # beside the document; only the part for readers (user_text), not the developers'.
        self.text.document().setBaseUrl(QUrl.fromLocalFile(f"{path.parent}/"))
        self.text.setMarkdown(user_text(path))
        self.preface = QLabel(preface)
        self.preface.setWordWrap(True)
        self.preface.setVisible(bool(preface))
        self.layout().insertWidget(0, self.preface)


class _FittingBrowser(QTextBrowser):
    """Pictures wider than the page are shrunk to fit it (plots are drawn at ~1,800 px)."""

    MAX_IMAGE_WIDTH = 860

    def loadResource(self, kind: int, url: QUrl):
        data = super().loadResource(kind, url)
        if kind != QTextDocument.ResourceType.ImageResource.value or data is None:
            return data
        image = data if isinstance(data, QImage) else QImage.fromData(data)
        if image.isNull() or image.width() <= self.MAX_IMAGE_WIDTH:
            return data
        return image.scaledToWidth(self.MAX_IMAGE_WIDTH, Qt.TransformationMode.SmoothTransformation)


class About(_Reading):
    """Version (the one in pyproject.toml), models, libraries, citations: what a support ticket
    or a privacy review needs to know about this installation."""

    def __init__(self, models: ModelsInfo | None, parent: QWidget | None = None) -> None:
        super().__init__("About DP-GLOW Viewer", (620, 520), parent)
        self.text.setMarkdown(about_markdown(models))


def about_markdown(models: ModelsInfo | None) -> str:
    import torch  # here, not at the top: the dialogs need not wait for torch to import

    if models is None:
        loaded = ["- **Models:** not loaded"]
    else:
        loaded = [f"- **Mixture model:** `{models.mixture_path}` "
                  f"(sha256 `{models.mixture_sha[:16]}…`)"]
        if models.normal_path is not None:
            loaded.append(f"- **Normal model:** `{models.normal_path}` "
                          f"(sha256 `{(models.normal_sha or '?')[:16]}…`)")
    return "\n".join([
        f"# DP-GLOW Viewer {__version__}",
        "Release chest X-rays with local differential privacy: the image is mapped into the "
        "latent space of a GLOW flow, clipped, and perturbed with Laplace noise from the "
        "operating system's secure source (DP-GLOW).",
        "",
        f"- **Version:** {__version__}",
        *loaded,
        f"- **Resources:** `{resources_root()}`",
        f"- **Python** {platform.python_version()}, **torch** {torch.__version__}, "
        f"**Qt** {qVersion()}, **PySide6** {PySide6.__version__}",
        f"- **System:** {platform.platform()}",
        "",
        "## Cite",
        "- Method: H. Shibata et al., *Local Differential Privacy Image Generation Using "
        "Flow-Based Deep Generative Models*, Appl. Sci. 13, 10132 (2023), "
        "https://doi.org/10.3390/app131810132",
        "- Default models trained on NIH ChestX-ray14: X. Wang et al., *ChestX-ray8*, "
        "CVPR 2017, NIH Clinical Center.",
        "",
        "MIT licence. The paper's budgets (a total epsilon of 10^5 and more per image) are no "
        "formal protection: read Help > Privacy notes before releasing images.",
    ])
