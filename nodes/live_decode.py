"""FrameStreamLiveDecode: each block an autoregressive sampler finishes goes into the video file at once.

The host's Sampler AR Video (Causal Forcing, Self-Forcing) denoises a video's latent one block of frames after
another and runs the model once more on each finished block, at sigma 0, to fill its KV cache. That call is
when a block is final: this node pushes it into one :class:`DecodeStream` per video, so the video file grows
while sampling goes on and is complete when it ends, equal to decoding the sampler's latent afterwards.
"""

from __future__ import annotations

from ..vae_core.errors import FrameStreamError
from ..vae_core.io.files import numbered_output, output_target
from ..vae_core.io.video import VideoFileSink
from ..vae_core.streaming.stream import DecodeStream
from . import host
from .decode_video import CODECS
from .host import io
from .registry import register
from .tiling_inputs import tile_inputs
from .vae_input import VAE_TOOLTIP, prepare_decode

AR_SAMPLER = "sample_ar_video"  # the host's autoregressive sampler (comfy.k_diffusion.sampling)
KEY = "framestream_live_decode"


class LiveDecode:
    """What the patched model does at each sampler run: open a stream per video, push each finished block."""

    def __init__(self, vae, fps: float, prefix: str, codec: str, crf: int, tiling: dict) -> None:
        self.vae, self.fps, self.prefix, self.codec, self.crf, self.tiling = vae, fps, prefix, codec, crf, tiling
        self.streams: list[DecodeStream] = []
        self.paths: list[str] = []
        self.latent_format = None
        self.next_frame = 0  # the first latent frame of the next block to push
        self.progress = (0, 1)  # the sampler's last reported (step, total), for previews beside its own

    def around(self, guider, sampler, latent_image, run):
        """One sampler run: streams opened before it, finished after it; closed (no file) if it fails."""
        model = guider.model_patcher.model
        function = getattr(getattr(sampler, "sampler_function", None), "__name__", "")
        if function != AR_SAMPLER or not hasattr(model.diffusion_model, "init_kv_caches"):
            host.warn("FrameStream Decode While Sampling needs Sampler AR Video and an autoregressive model (Causal "
                      f"Forcing, Self-Forcing: Causal-Wan); this run uses {function or type(sampler).__name__} on "
                      f"{type(model.diffusion_model).__name__}, so nothing is decoded while it samples. Decode its "
                      "LATENT afterwards.")
            return run()
        self._open(model.latent_format, latent_image)
        try:
            output = run()
            if self.next_frame != latent_image.shape[2]:
                raise FrameStreamError(f"the sampler finished {self.next_frame} of {latent_image.shape[2]} latent "
                                       "frames as blocks; the video was not kept")
            for stream in self.streams:
                stream.flush()
        except BaseException:
            for stream in self.streams:
                stream.close()
            raise
        finally:
            self.streams, self.latent_format = [], None
        return output

    def _open(self, latent_format, latent_image) -> None:
        channels = getattr(latent_format, "latent_channels", latent_image.shape[1])
        videos, _, length, height, width = latent_image.shape
        samples = {"samples": latent_image[:1].new_zeros(1, channels, length, height, width)}
        self.streams, self.paths, self.next_frame = [], [], 0
        for _ in range(videos):
            suffix, lossless = CODECS[self.codec]
            path = numbered_output(host.output_directory(), self.prefix, suffix)
            sink = VideoFileSink(path, self.fps, crf=self.crf, lossless=lossless)
            try:  # refused before sampling: a VAE for another model's latent, a bad budget
                job = prepare_decode(self.vae, samples, 1, self.tiling, sink)
            except FrameStreamError as err:
                raise FrameStreamError(f"the VAE does not fit this autoregressive model's latent: {err}") from None
            self.streams.append(DecodeStream(job.model, sink, job.settings, frames=length))
            self.paths.append(path)
        self.latent_format = latent_format

    def see(self, x, sigma: float, options: dict) -> None:
        """A call of the model: at sigma 0 with the sampler's AR state, the block starting at its start frame is
        final (the first of the conditionings' copies of it; later calls for the same block are skipped)."""
        state = options.get("ar_state")
        if not self.streams or sigma != 0.0 or state is None or state.get("start_frame") != self.next_frame:
            return
        copies = len(options.get("cond_or_uncond") or [0])
        block = self.latent_format.process_out(x[: x.shape[0] // copies].float()).cpu()  # raw VAE space
        newest = None
        for video, stream in enumerate(self.streams):
            frames = stream.push(block[video : video + 1])
            if video == 0 and len(frames):
                newest = frames[-1]
        self.next_frame += block.shape[2]
        if newest is not None:
            host.show_frame(*self.progress, newest)

    def track(self, guider, callback):
        """The sampler's progress callback, noting its step for the previews shown beside its own."""

        def noted(step, x0, x, total_steps):
            self.progress = (step + 1, total_steps)
            if callback is not None:
                callback(step, x0, x, total_steps)

        return noted


@register
class FrameStreamLiveDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamLiveDecode",
            display_name="FrameStream Decode While Sampling (autoregressive)",
            category="FrameStream",
            description=(
                "Put before Sampler AR Video's guider: each block of latent frames the autoregressive model finishes "
                "is decoded into a video file at once, while the next is sampled. The file is complete when "
                "sampling ends, equal to decoding the sampler's LATENT afterwards; memory stays flat in length. "
                "A cancelled run leaves no file. Other samplers and models sample as usual (a warning says why "
                "nothing is decoded)."),
            inputs=[
                io.Model.Input("model", tooltip="An autoregressive video model (Causal-Wan: Causal Forcing, "
                                                "Self-Forcing) for Sampler AR Video."),
                io.Vae.Input("vae", tooltip=VAE_TOOLTIP + " The one for the model's latents (Wan 2.1 for Causal-Wan)."),
                io.Float.Input("fps", default=16.0, min=1.0, max=240.0, step=1.0,
                               tooltip="Frame rate of the file (Wan 2.1 makes 16 fps video)."),
                io.String.Input("filename_prefix", default="FrameStream/live",
                                tooltip="File name inside the output folder; may contain subfolders, never '..' "
                                        "or an absolute path. One file per video of the batch."),
                io.Combo.Input("codec", options=list(CODECS), default="h264", tooltip=(
                    "h264: an .mp4 every player opens. Lossless: exact 8-bit RGB in an .mp4, not playable in "
                    "browsers. vp9: a .webm.")),
                io.Int.Input("crf", default=19, min=0, max=51,
                             tooltip="Quality: lower is better and larger; 17-23 is typical for h264."),
                *tile_inputs(),
            ],
            outputs=[io.Model.Output(tooltip="The same model; Sampler AR Video runs with it decode as they sample.")],
        )

    @classmethod
    def execute(cls, model, vae, fps, filename_prefix, codec, crf, **tiling):
        output_target(host.output_directory(), filename_prefix)  # a bad prefix is refused now, not after sampling
        live = LiveDecode(vae, fps, filename_prefix, codec, crf, tiling)
        patched = model.clone()
        host.around_each_sampling(patched, KEY, live.around)
        host.around_sampling(patched, KEY + "_progress", live.track)
        host.on_each_model_call(patched, KEY, live.see)
        return io.NodeOutput(patched)

