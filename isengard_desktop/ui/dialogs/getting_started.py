"""Help → Getting started: the five steps from photos to a first picture, and what you need."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from ... import APP_NAME

STEPS: tuple[tuple[str, str], ...] = (
    ("Add photos", "Characters → New character: name the person and drop 15 to 40 varied "
                   "photos of them (faces clearly visible, different clothes and settings)."),
    ("Check the dataset", "Dataset → Run checks: remove blurry, tiny or duplicate photos and "
                          "describe each photo in its caption."),
    ("Choose a base model", "Training: pick the character and a base model (add its folder "
                            "in Settings → Model folders)."),
    ("Train", "Training → Start training (Ctrl+Enter). It runs on your GPU; you can "
              "watch the samples and stop or resume it."),
    ("Generate", "Generate: pick the character's LoRA, write a prompt with its trigger word "
                 "and press Generate (Ctrl+Enter). Pictures are made by ComfyUI."),
)

NEEDS: tuple[tuple[str, str], ...] = (
    ("A GPU", "an NVIDIA GPU for training (more memory allows larger models); on a CPU "
              "training takes hours."),
    ("A base model", "a checkpoint file (SDXL, Flux, …) in a folder listed in Settings."),
    ("ComfyUI", "for generating pictures: the app can start its own copy or use one you run "
                "(Settings → ComfyUI)."),
)


def getting_started_html() -> str:
    steps = "".join(f"<li><b>{title}.</b> {text}</li>" for title, text in STEPS)
    needs = "".join(f"<li><b>{title}:</b> {text}</li>" for title, text in NEEDS)
    return (f"<h3>From photos to your first picture</h3><ol>{steps}</ol>"
            f"<h3>What you need</h3><ul>{needs}</ul>"
            "<p>Something went wrong? Help → Open logs folder, or export a debug bundle "
            "from the job in Training → History.</p>")


class GettingStartedDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Getting started with {APP_NAME}")
        self.text = QLabel(getting_started_html())
        self.text.setWordWrap(True)
        self.text.setMinimumWidth(480)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
