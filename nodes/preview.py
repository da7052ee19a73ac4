"""FrameStreamWholeClipPreview: the sampler's preview shows the whole predicted clip, moving, in 10 % of its time."""

from __future__ import annotations

import os

import torch

from ..vae_core import preview
from ..vae_core.errors import FrameStreamError
from ..vae_core.models.registry import load_vae
from . import host
from .host import io
from .registry import register

AUTO, LINEAR = "auto", "latent to RGB"
AUTO_SHARE = 0.1  # every=0: previews take at most this share of the sampling time
# the TAEHV-family files that read each of the host's latent formats, by release name, preferred first
TAE_FOR_FORMAT = {"Wan21": ("taew2_1", "lighttaew2_1"), "Wan22": ("taew2_2", "lighttaew2_2"),
                  "HunyuanVideo": ("taehv",), "HunyuanVideo15": ("taehv1_5", "lighttaehy1_5"),
                  "LTXV": ("taeltx_2", "taeltx2_3"), "LTXAV": ("taeltx_2", "taeltx2_3"),
                  "CogVideoX": ("taecvx",), "CogVideoX1_5": ("taecvx",)}
_LOADED: dict[str, torch.nn.Module] = {}  # TAEs by file, loaded once per session


def tae_for(format_name: str, files: list[str]) -> str | None:
    """The installed file (``vae_approx/NAME``) of a TAE for this latent format, or None."""
    for stem in TAE_FOR_FORMAT.get(format_name, ()):
        for name in files:
            base = os.path.splitext(os.path.basename(name))[0].lower()
            if base == stem or base.startswith(stem + "_"):
                return name
    return None


class ClipPreview:
    """Per sampler run: picks the decoder for the model's latent format, then previews each step's x0."""

    def __init__(self, decoder: str, size: int, fps: float, every: int) -> None:
        self.decoder, self.size, self.fps, self.every = decoder, size, fps, every

    def callback_for(self, guider, callback):
        latent_format = guider.model_patcher.model.latent_format
        make = self._maker(latent_format)
        pacer = preview.PreviewPacer(AUTO_SHARE)  # starts its clock as sampling starts

        def due(step, total_steps):
            if self.every == 0:
                return pacer.due()
            return step % self.every == 0 or step == total_steps - 1

        def preview_callback(step, x0, x, total_steps):
            if callback is not None:
                callback(step, x0, x, total_steps)
            if make is not None and x0.ndim == 5 and due(step, total_steps):
                pacer.run(lambda: host.show_preview(step, total_steps, make(x0), self.fps))

        return preview_callback

    def _maker(self, latent_format):
        name = self.decoder
        if name == AUTO:
            name = tae_for(type(latent_format).__name__, host.vae_files()) or LINEAR
        if name != LINEAR:
            tae = _tae(name)
            return lambda x0: preview.decoded_preview(_checked(tae, x0, name), latent_format.process_out(x0), self.size)
        factors = getattr(latent_format, "latent_rgb_factors", None)
        if factors is None:
            if self.decoder == LINEAR:
                raise FrameStreamError(f"the host has no latent-to-RGB factors for {type(latent_format).__name__} "
                                       "latents: choose a TAE file for the preview")
            return None  # nothing to preview with: the host's own preview stays
        bias = getattr(latent_format, "latent_rgb_factors_bias", None)
        factors = torch.tensor(factors)
        bias = None if bias is None else torch.tensor(bias)
        return lambda x0: preview.linear_preview(x0, factors, bias, self.size)


def _tae(name: str):
    if name not in _LOADED:
        device, dtype = host.vae_device_and_dtype()
        _LOADED[name] = load_vae(host.vae_path(name), device, dtype)
    return _LOADED[name]


def _checked(tae, x0: torch.Tensor, name: str):
    if tae.latent_channels != x0.shape[1]:
        raise FrameStreamError(f"{name} reads {tae.latent_channels}-channel latents but this model samples "
                               f"{x0.shape[1]}-channel ones: choose the TAE for this model, or auto")
    return tae


@register
class FrameStreamWholeClipPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        taes = [name for name in host.vae_files() if name.startswith(host.APPROX + "/")]
        return io.Schema(
            node_id="FrameStreamWholeClipPreview",
            display_name="FrameStream Whole-Clip Preview",
            category="FrameStream",
            description=(
                "Put before a sampler: its preview shows every frame of the clip it predicts, moving, at each step "
                "(the host shows one frame). Decoded by a tiny TAEHV decoder from models/vae_approx when one is "
                "installed for the model (taew2_1, taew2_2, taehv, taehv1_5, taeltx_2, taecvx), else by the host's "
                "latent-to-RGB colours. The animation plays in both node views (FrameStream's web extension plays "
                "it on the classic canvas)."),
            inputs=[
                io.Model.Input("model", tooltip="The video model whose sampling to preview."),
                io.Combo.Input("decoder", options=[AUTO, LINEAR, *taes], default=AUTO, tooltip=(
                    "auto: the TAE in models/vae_approx made for this model's latents, else latent to RGB. latent "
                    "to RGB: the host's colour factors, at latent resolution (no cost). Or a TAE file by name.")),
                io.Int.Input("size", default=256, min=32, max=1024, step=8,
                             tooltip="Preview frames fit this many pixels on their long side."),
                io.Float.Input("fps", default=8.0, min=1.0, max=60.0, step=1.0,
                               tooltip="Playback speed of the preview animation, in frames per second."),
                io.Int.Input("every", default=0, min=0, max=100, tooltip=(
                    "0: preview as often as keeps previews within 10 % of the sampling time (every step when the "
                    "decoder is cheap beside the model). N: a preview every N steps and at the last.")),
            ],
            outputs=[io.Model.Output(tooltip="The same model; samplers using it preview whole clips.")],
        )

    @classmethod
    def execute(cls, model, decoder=AUTO, size=256, fps=8.0, every=0):
        patched = model.clone()
        host.around_sampling(patched, "framestream_whole_clip_preview", ClipPreview(decoder, size, fps, every).callback_for)
        return io.NodeOutput(patched)
