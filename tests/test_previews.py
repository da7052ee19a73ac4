"""Whole-clip previews while sampling (no host): the decoders they use, the file picked for a latent format, the
callback chained around the host's, and the animated image the host is handed."""

import io

import pytest
import torch
from PIL import Image

from framestream.nodes import host, preview as preview_node
from framestream.vae_core import FrameStreamError, decode, preview
from framestream.vae_core.models.taehv import latent_spaces

from oracle import VARIANTS, tae


class Wan21:
    """The host's latent format, as far as previews read it."""

    latent_rgb_factors = torch.randn(16, 3, generator=torch.Generator().manual_seed(0)).mul(0.2).tolist()
    latent_rgb_factors_bias = [0.1, -0.2, 0.05]

    def process_out(self, z):
        mean = torch.tensor(latent_spaces.WAN21_MEAN).view(1, -1, 1, 1, 1)
        return z * torch.tensor(latent_spaces.WAN21_STD).view(1, -1, 1, 1, 1) + mean


class Guider:
    def __init__(self, latent_format):
        self.model_patcher = type("Patcher", (), {"model": type("Model", (), {"latent_format": latent_format})()})()


def test_the_linear_preview_mixes_every_frame_as_the_host_mixes_one():
    x0 = torch.randn(1, 16, 5, 6, 8)
    factors, bias = torch.tensor(Wan21.latent_rgb_factors), torch.tensor(Wan21.latent_rgb_factors_bias)
    frames = preview.linear_preview(x0, factors, bias, size=8)
    assert frames.shape == (5, 6, 8, 3) and frames.dtype == torch.uint8
    for t in range(5):  # the host's Latent2RGBPreviewer on frame t
        rgb = torch.nn.functional.linear(x0[0, :, t].movedim(0, -1), factors.t(), bias)
        host_frame = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)
        assert (frames[t].int() - host_frame.int()).abs().max() <= 1


def test_the_tae_preview_is_every_decoded_frame_made_small():
    vae = tae("taew2_1", VARIANTS["taehv"], sampled=False)
    raw = torch.randn(1, 16, 3, 8, 6)
    frames = preview.decoded_preview(vae, raw, size=32)
    full = decode(vae, raw)
    assert frames.shape == (9, 32, 24, 3)
    small = torch.nn.functional.interpolate(full.permute(0, 3, 1, 2), size=(32, 24), mode="area")
    assert (frames.float() / 255 - small.permute(0, 2, 3, 1)).abs().max() < 1 / 255 + 1e-6


def test_auto_picks_the_installed_tae_for_the_models_latent_format():
    files = ["wan_2.1_vae.safetensors", "vae_approx/taehv1_5.safetensors", "vae_approx/taew2_2_super.safetensors",
             "vae_approx/taehv.safetensors", "vae_approx/lighttaew2_1.safetensors"]
    assert preview_node.tae_for("HunyuanVideo", files) == "vae_approx/taehv.safetensors"
    assert preview_node.tae_for("HunyuanVideo15", files) == "vae_approx/taehv1_5.safetensors"
    assert preview_node.tae_for("Wan22", files) == "vae_approx/taew2_2_super.safetensors"
    assert preview_node.tae_for("Wan21", files) == "vae_approx/lighttaew2_1.safetensors"
    assert preview_node.tae_for("Mochi", files) is None


def test_lighttae_files_read_raw_latents_and_madebyollins_the_sampled_ones():
    assert latent_spaces.of_file("lighttaew2_1.safetensors").mean is None
    assert latent_spaces.of_file("taew2_1.safetensors").mean == latent_spaces.WAN21_MEAN


def test_the_preview_callback_runs_the_hosts_then_shows_every_frame(monkeypatch):
    shown, called = [], []
    monkeypatch.setattr(host, "show_preview", lambda step, total, frames, fps: shown.append((step, frames.shape)))
    clip = preview_node.ClipPreview(preview_node.LINEAR, size=64, fps=8.0, every=2)
    callback = clip.callback_for(Guider(Wan21()), lambda *args: called.append(args[0]))
    x0 = torch.randn(1, 16, 7, 4, 8)
    for step in range(5):
        callback(step, x0, x0, 5)
    assert called == [0, 1, 2, 3, 4]
    assert shown == [(0, (7, 32, 64, 3)), (2, (7, 32, 64, 3)), (4, (7, 32, 64, 3))]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_pacer_keeps_previews_within_their_share_of_the_time():
    """Steps of 1 s, previews of 0.3 s: within 10 % of the time that is one preview every 2-3 steps."""
    clock = FakeClock()
    pacer = preview.PreviewPacer(0.1, clock)
    shown = []
    for step in range(40):
        clock.now += 1.0  # the model's step
        if pacer.due():
            shown.append(step)
            pacer.run(lambda: setattr(clock, "now", clock.now + 0.3))
    assert shown[0] == 0  # the first step measures the cost
    assert pacer.spent <= 0.1 * clock.now + 0.3  # within the share, give or take that first preview
    assert pacer.spent >= 0.1 * clock.now - 2 * 0.3  # and not needlessly sparse
    gaps = {b - a for a, b in zip(shown[1:], shown[2:])}
    assert gaps <= {2, 3}, shown


def test_a_cheap_preview_is_shown_at_every_step():
    clock = FakeClock()
    pacer = preview.PreviewPacer(0.1, clock)
    for step in range(10):
        clock.now += 1.0
        assert pacer.due(), step
        pacer.run(lambda: setattr(clock, "now", clock.now + 0.05))


def test_every_0_paces_the_callback_by_the_time_previews_take(monkeypatch):
    clock = FakeClock()
    pacer = preview.PreviewPacer
    monkeypatch.setattr(preview, "PreviewPacer", lambda share: pacer(share, clock))
    shown = []

    def show(step, total, frames, fps):
        clock.now += 0.5  # a preview costing half a step
        shown.append(step)

    monkeypatch.setattr(host, "show_preview", show)
    callback = preview_node.ClipPreview(preview_node.LINEAR, size=64, fps=8.0, every=0).callback_for(
        Guider(Wan21()), None)
    x0 = torch.randn(1, 16, 3, 4, 4)
    for step in range(20):
        clock.now += 1.0
        callback(step, x0, x0, 20)
    assert shown[0] == 0 and 2 <= len(shown) <= 4, shown  # 10 % of ~21 s is ~2 s: four previews at most


def test_a_tae_for_other_latents_is_refused_with_its_channels(monkeypatch):
    monkeypatch.setitem(preview_node._LOADED, "vae_approx/taew2_2.safetensors", tae("taew2_2"))
    clip = preview_node.ClipPreview("vae_approx/taew2_2.safetensors", 64, 8.0, 1)
    callback = clip.callback_for(Guider(Wan21()), None)
    with pytest.raises(FrameStreamError, match="reads 48-channel latents but this model samples 16"):
        callback(0, torch.randn(1, 16, 2, 4, 4), None, 1)


def test_the_host_gets_one_looping_animation_of_all_frames():
    frames = torch.randint(0, 255, (6, 16, 24, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    buffer = io.BytesIO()
    host.AnimatedPreview(frames, fps=10.0).save(buffer, format="WEBP", quality=95, compress_level=1)  # as the host
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert image.format == "WEBP" and image.n_frames == 6 and image.size == (24, 16)
    assert image.info.get("loop") == 0  # for ever
