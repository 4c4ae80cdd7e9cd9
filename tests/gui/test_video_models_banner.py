"""The real app: a ComfyUI server without the Wan 2.1 image-to-video model makes the Video tab
offer it; the button opens the set-up assistant's Base models page with that video set ticked;
once the server has the file, the banner goes."""

from __future__ import annotations

from PIL import Image

from isengard_desktop.ui.video import VideoTab
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401 - fixture
from tests.helpers.generate_ui import click, configure_remote

FULL = {
    "diffusion_models": ["wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors",
                         "wan2.1_flf2v_720p_14B_fp8_e4m3fn.safetensors",
                         "wan2.1_t2v_1.3B_fp16.safetensors"],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
    "clip_vision": ["clip_vision_h.safetensors"],
    "checkpoints": [],
    "loras": [],
}
NO_I2V = dict(FULL, diffusion_models=FULL["diffusion_models"][1:])


def test_no_wan_i2v_model_banner_opens_the_wizard_with_the_set_ticked(
        qt_asyncio_loop, qtbot, make_app, make_comfy_double, tmp_path):  # noqa: F811
    double = make_comfy_double(models=NO_I2V)
    configure_remote(double.url)
    ctx = make_app()
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Video"])
    qtbot.waitUntil(lambda: ctx.tabs["Video"].findChildren(VideoTab) != [], timeout=10_000)
    tab = ctx.tabs["Video"].findChildren(VideoTab)[0]
    start = tmp_path / "start.png"
    Image.new("RGB", (64, 48), (200, 40, 40)).save(start)
    tab.keyframes.add_paths([start])
    assert tab.current_workflow() == "wan21-i2v"
    # the answer comes once the server is ready (the app asks again when the servers change)
    qtbot.waitUntil(lambda: tab.model_check is not None and tab.model_check.workflow ==
                    "wan21-i2v" and tab.model_check.server != "", timeout=15_000)
    qtbot.waitUntil(tab.setup_banner.isVisible, timeout=5000)
    text = tab.setup_banner.text()
    assert text.startswith("The ComfyUI server has no Wan 2.1 image-to-video 480p (14B) model. "
                           "Get it (≈ 24.6 GB)"), text
    assert text.endswith("lacks: no Wan 2.1 I2V diffusion model (wan2.1_i2v_480p_14B_fp8_e4m3fn"
                         ".safetensors) in models/diffusion_models (or models/unet)."), text
    assert tab.setup_banner.button.text() == "Get Wan 2.1 image-to-video 480p (14B)…"
    click(qtbot, tab.setup_banner.button)
    qtbot.waitUntil(lambda: ctx.wizard is not None and ctx.wizard.isVisible(), timeout=5000)
    wizard = ctx.wizard
    assert wizard.current_page() == "base_models"
    page = wizard.base_models
    qtbot.waitUntil(lambda: "wan21-i2v" in page.video_boxes, timeout=5000)
    assert page.video_boxes["wan21-i2v"].isChecked()
    assert page.video_boxes["wan21-i2v"].text() == "Wan 2.1 image-to-video 480p (14B) — 24.6 GB"
    assert {k for k, b in page.video_boxes.items() if b.isChecked()} == {"wan21-i2v"}
    wizard.close()
    qtbot.waitUntil(lambda: ctx.wizard is None, timeout=5000)
    # the file arrives on the server and the downloads end: asked again, the banner goes
    qtbot.waitUntil(lambda: ctx.video.checks_running == 0, timeout=15_000)
    double.set_models(FULL)
    ctx.downloads.count_changed.emit(0)       # as DownloadService says "nothing left"
    qtbot.waitUntil(lambda: tab.model_check.missing == () and tab.setup_banner.isHidden(),
                    timeout=15_000)
