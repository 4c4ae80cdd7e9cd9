"""pytest fixtures of the ComfyUI test double; import them from tests.helpers.comfy_double."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from tests.helpers.comfy_double_nodes import png_bytes

if TYPE_CHECKING:
    from tests.helpers.comfy_double import ComfyDouble


def _fixture_options(tmp_path: Path, n: int, options: dict[str, Any]) -> dict[str, Any]:
    for kind in ("output", "input", "temp"):
        if f"{kind}_dir" not in options:
            folder = tmp_path / f"comfy{n}" / kind
            folder.mkdir(parents=True, exist_ok=True)
            if kind == "input":
                (folder / "example.png").write_bytes(
                    png_bytes(Image.new("RGB", (64, 64), (90, 90, 90))))
            options[f"{kind}_dir"] = folder
    return options


@pytest.fixture
def make_comfy_double(tmp_path: Path) -> Iterator[Callable[..., ComfyDouble]]:
    """Factory: ``make_comfy_double(**options)`` -> a started ComfyDouble (stopped after)."""
    doubles: list[ComfyDouble] = []

    def make(**options: Any) -> ComfyDouble:
        from tests.helpers.comfy_double import ComfyDouble

        double = ComfyDouble(**_fixture_options(tmp_path, len(doubles) + 1, options))
        doubles.append(double)
        double.start()
        return double

    yield make
    for double in doubles:
        double.stop()


@pytest.fixture
def comfy_double(tmp_path: Path) -> Iterator[ComfyDouble]:
    """A started ComfyDouble with default options (folders under tmp_path/comfy0)."""
    from tests.helpers.comfy_double import ComfyDouble

    double = ComfyDouble(**_fixture_options(tmp_path, 0, {}))
    double.start()
    yield double
    double.stop()
