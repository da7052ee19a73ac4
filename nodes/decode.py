"""FrameStreamDecode: the host's VAEDecode for video latents, streamed frame group by frame group."""

from __future__ import annotations

from ..vae_core.streaming import engine
from ..vae_core.streaming.sinks import FrameSink, Sink
from ..vae_core.streaming.stitch import StitchSink
from .host import io
from .registry import register
from .tiling_inputs import tile_inputs
from .vae_input import VAE_TOOLTIP, prepare_decode

SAMPLES_TOOLTIP = ("The latent to decode, e.g. from a sampler or Load Latent: a video latent for a video VAE (of an "
                   "audio+video model too: its video part is decoded), or a batch of image latents (one per frame, "
                   "e.g. AnimateDiff or SVD) for an image VAE or SVD's.")


def decode_inputs() -> list:
    """The VAE and the latent: the first two inputs of both decode nodes."""
    return [io.Vae.Input("vae", tooltip=VAE_TOOLTIP), io.Latent.Input("samples", tooltip=SAMPLES_TOOLTIP)]


# frames_per_step 0: the plan sizes the steps from the frame (vae_core/streaming/step_size.py)
SIZED_FROM_FRAME = 0


def frames_per_step_input():
    return io.Int.Input("frames_per_step", default=SIZED_FROM_FRAME, min=0, max=64, optional=True,
                        tooltip=(
        "Latent frames decoded per step (each gives 4 video frames for Wan and HunyuanVideo, 8 for LTX, 6 for "
        "Mochi, 1 for image VAEs). 0, the default, sizes the steps from the frame: several latent frames at small "
        "sizes, where one step is mostly fixed costs, one at large sizes, and a short HunyuanVideo or SVD clip in "
        "one piece. Higher uses more memory. The result is the same for every value (Wan, LTX-Video, LTX-2, "
        "HunyuanVideo 1.5, Mochi, image VAEs, SVD) or close (HunyuanVideo); CogVideoX always decodes in its own "
        "2-frame steps."))


def segment_inputs() -> list:
    return [
        io.Int.Input("segment_overlap", default=0, min=0, max=64, optional=True, tooltip=(
            "0: the batch's videos one after another. 1 or more: the batch holds consecutive segments of one video "
            "(Keyframe Interpolation makes them) sharing this many frames, which are written once. Each segment is "
            "decoded with its own causal cache.")),
        io.Boolean.Input("crossfade", default=False, optional=True, tooltip=(
            "Blend the shared frames linearly from one segment into the next instead of keeping the earlier "
            "segment's.")),
    ]


def segments_sink(sink: Sink, segment_overlap: int = 0, crossfade: bool = False) -> Sink:
    return StitchSink(sink, segment_overlap, crossfade) if segment_overlap else sink


@register
class FrameStreamDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamDecode",
            display_name="FrameStream Decode (streaming video VAE)",
            category="FrameStream",
            description=(
                "Decodes a video latent through a cached causal VAE a few latent frames at a time, tiling the frame "
                "when memory is short, so memory does not grow with video length. Untiled, the same result as VAE "
                "Decode (to fp32 rounding)."),
            inputs=[*decode_inputs(), frames_per_step_input(), *tile_inputs(), *segment_inputs()],
            outputs=[io.Image.Output(tooltip="The decoded frames, one image per frame (all videos of the batch one "
                                             "after another).")],
        )

    @classmethod
    def execute(cls, vae, samples, frames_per_step=SIZED_FROM_FRAME, segment_overlap=0,
                crossfade=False, **tiling):
        job = prepare_decode(vae, samples, frames_per_step or None, tiling)
        sink = segments_sink(FrameSink(), segment_overlap, crossfade)
        return io.NodeOutput(engine.decode(job.model, job.latent, sink=sink, settings=job.settings, plan=job.plan))
