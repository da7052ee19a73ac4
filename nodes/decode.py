"""FrameStreamDecode: the host's VAEDecode for video latents, streamed frame group by frame group."""

from __future__ import annotations

from ..vae_core.streaming import engine
from ..vae_core.streaming.sinks import FrameSink, Sink
from ..vae_core.streaming.stitch import StitchSink
from .registry import node
from .tiling_inputs import TILE_INPUTS
from .vae_input import VAE_TOOLTIP, prepare_decode

DECODE_INPUTS = {
    "vae": ("VAE", {"tooltip": VAE_TOOLTIP}),
    "samples": ("LATENT", {"tooltip": "The latent to decode, e.g. from a sampler or Load Latent: a video latent "
                                       "for a video VAE, or a batch of image latents (one per frame, e.g. "
                                       "AnimateDiff or SVD) for an image VAE or SVD's."}),
}
FRAMES_PER_STEP = ("INT", {
    "default": engine.DEFAULT_FRAMES_PER_STEP, "min": 1, "max": 64,
    "tooltip": "Latent frames decoded per step (each gives 4 video frames for Wan and HunyuanVideo, 8 for LTX, 6 "
               "for Mochi, 1 for image VAEs). Higher can be faster and uses more memory. The result is the same "
               "for every value (Wan, LTX-Video, LTX-2, HunyuanVideo 1.5, Mochi, image VAEs, SVD) or close "
               "(HunyuanVideo); CogVideoX always decodes in its own 2-frame steps.",
})

SEGMENT_INPUTS = {
    "segment_overlap": ("INT", {"default": 0, "min": 0, "max": 64,
                                "tooltip": "0: the batch's videos one after another. 1 or more: the batch holds "
                                           "consecutive segments of one video (Keyframe Interpolation makes them) "
                                           "sharing this many frames, which are written once. Each segment is "
                                           "decoded with its own causal cache."}),
    "crossfade": ("BOOLEAN", {"default": False,
                              "tooltip": "Blend the shared frames linearly from one segment into the next "
                                         "instead of keeping the earlier segment's."}),
}


def segments_sink(sink: Sink, segment_overlap: int = 0, crossfade: bool = False) -> Sink:
    return StitchSink(sink, segment_overlap, crossfade) if segment_overlap else sink


@node("FrameStream Decode (streaming video VAE)")
class FrameStreamDecode:
    DESCRIPTION = (
        "Decodes a video latent through a cached causal VAE a few latent frames at a time, tiling the frame when "
        "memory is short, so memory does not grow with video length. Untiled, the same result as VAE Decode (to "
        "fp32 rounding)."
    )
    CATEGORY = "FrameStream"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded frames, one image per frame (all videos of the batch one after another).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": DECODE_INPUTS,
            "optional": {"frames_per_step": FRAMES_PER_STEP, **TILE_INPUTS, **SEGMENT_INPUTS},
        }

    def decode(self, vae, samples, frames_per_step=engine.DEFAULT_FRAMES_PER_STEP, segment_overlap=0,
               crossfade=False, **tiling):
        model, latent, settings = prepare_decode(vae, samples, frames_per_step, tiling)
        sink = segments_sink(FrameSink(), segment_overlap, crossfade)
        frames = engine.decode(model, latent, sink=sink, settings=settings)
        return (frames,)
