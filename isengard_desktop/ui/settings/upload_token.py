"""Settings → ComfyUI: the LoRA upload token of the selected remote server, and how to install
our upload node there.

The token is the one in ``token.txt`` next to the ``isengard_lora_upload`` node on that server.
It is kept in the OS keyring per server address (:meth:`SecretStore.set_server_token`), read,
saved and cleared off the UI thread (:class:`~...services.background.BackgroundOp`).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPushButton,
                               QVBoxLayout, QWidget)

from ...core.secrets import SecretStore
from ...services.background import BackgroundOp

__all__ = ["INSTALL_TEXT", "UploadTokenWidget", "install_text"]

INSTALL_TEXT = (
    "To let Isengard put your trained LoRAs on a ComfyUI server by itself:\n\n"
    "1. Copy the folder\n   {node}\n   into that server's ComfyUI/custom_nodes/ folder.\n"
    "2. In the copied folder, create token.txt holding one line: a long random password "
    "of your choice (for example the output of: python -c \"import secrets; "
    "print(secrets.token_urlsafe(32))\").\n"
    "3. Restart ComfyUI there. Its log says \"[isengard_lora_upload] POST/GET /isengard/lora\".\n"
    "4. Here, select the server in the list, paste the same token into Upload token and press "
    "Save token.\n\n"
    "Generate then uploads a character's LoRA into models/loras/isengard/ on that server "
    "before the first job that needs it, once. The node only accepts .safetensors files, "
    "checks each file's SHA-256, never overwrites a different file of the same name and "
    "refuses files over 2 GiB (set ISENGARD_UPLOAD_MAX_MB on the server to change that). "
    "The ComfyUI that Isengard starts on this computer needs none of this: it reads the LoRA "
    "folder directly.")


def install_text() -> str:
    from ...core.comfy.lora_upload import node_folder

    return INSTALL_TEXT.format(node=node_folder())


class UploadTokenWidget(QWidget):
    """Token field + Save/Clear for the server ``current_url()`` names, and the install help."""

    def __init__(self, secrets: SecretStore, current_url: Callable[[], str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._secrets = secrets
        self._current_url = current_url
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        label = QLabel("Upload token")
        self.token_edit = QLineEdit()
        self.token_edit.setObjectName("comfyui_upload_token_input")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("select a server, paste the token from its token.txt")
        tip = ("The token in token.txt of the isengard_lora_upload node on the selected server. "
               "With it, Generate uploads the character's LoRA to that server (into "
               "models/loras/isengard/) before a job, once. Kept in the OS keyring, per server; "
               "never written to a file or the log.")
        label.setToolTip(tip)
        self.token_edit.setToolTip(tip)
        self.save_button = QPushButton("Save token")
        self.save_button.setObjectName("comfyui_upload_token_save")
        self.save_button.setToolTip("Store this token for the selected server in the OS keyring.")
        self.save_button.setAutoDefault(False)
        self.save_button.clicked.connect(self.save)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("comfyui_upload_token_clear")
        self.clear_button.setToolTip("Forget the selected server's upload token (LoRAs are then "
                                     "copied there by hand).")
        self.clear_button.setAutoDefault(False)
        self.clear_button.clicked.connect(self.clear)
        row.addWidget(label)
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.clear_button)
        self.state = QLabel("")
        self.state.setObjectName("comfyui_upload_token_state")
        self.state.setWordWrap(True)
        self.help_button = QPushButton("How to install the upload node…")
        self.help_button.setObjectName("comfyui_upload_node_help")
        self.help_button.setToolTip("What to copy to a ComfyUI server so Isengard can upload "
                                    "LoRAs there.")
        self.help_button.setAutoDefault(False)
        self.help_button.clicked.connect(self.show_help)
        help_row = QHBoxLayout()
        help_row.addWidget(self.help_button)
        help_row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(self.state)
        layout.addLayout(help_row)
        self.help_box: QMessageBox | None = None

    # -- state ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Show whether the selected server has a token (read off the UI thread)."""
        url = self._current_url()
        if not url:
            self.state.setText("Select a server to see or set its upload token.")
            return
        secrets = self._secrets

        def read() -> tuple[str, str]:
            ok, reason = secrets.available()
            if not ok:
                return url, f"No OS keyring: tokens cannot be stored. {reason}"
            value = secrets.server_token(url)
            if not value:
                return url, f"{url}: no upload token (LoRAs are copied there by hand)."
            shown = "••••" if len(value) < 12 else f"{value[:3]}…{value[-4:]}"
            return url, f"{url}: upload token set ({shown})."

        BackgroundOp(parent=self, op=read).success(self._show_state) \
            .failure(lambda exc: self.state.setText(f"The keyring failed: {exc}")) \
            .supersede("upload-token-read").run()

    def _show_state(self, result: tuple[str, str]) -> None:
        url, text = result
        if url == self._current_url():
            self.state.setText(text)

    def _write(self, value: str) -> None:
        url = self._current_url()
        if not url:
            self.state.setText("Select the server in the list first (add it if needed).")
            return
        secrets = self._secrets
        self.save_button.setEnabled(False)
        self.clear_button.setEnabled(False)

        def done(_result: object) -> None:
            self.save_button.setEnabled(True)
            self.clear_button.setEnabled(True)
            self.token_edit.clear()
            self.refresh()

        def failed(exc: BaseException) -> None:
            self.save_button.setEnabled(True)
            self.clear_button.setEnabled(True)
            self.state.setText(f"Could not change the upload token of {url}: {exc}")

        BackgroundOp(parent=self, op=lambda: secrets.set_server_token(url, value)) \
            .success(done).failure(failed).in_lane("upload-token-write").run()

    def save(self) -> None:
        value = self.token_edit.text().strip()
        if not value:
            self.state.setText("Paste the token first (the line in the node's token.txt).")
            return
        self._write(value)

    def save_pending(self) -> None:
        """A token typed (for a selected server) but not saved: save it now (Settings' OK)."""
        if self.token_edit.text().strip() and self._current_url():
            self.save()

    def clear(self) -> None:
        self._write("")

    def show_help(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Install the upload node",
                          install_text(), QMessageBox.StandardButton.Close, self)
        box.setObjectName("upload_node_help")
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setModal(False)
        self.help_box = box
        box.show()
