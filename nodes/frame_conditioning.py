"""Known-frame conditioning nodes: every keyframe segment in one batch, continuing a clip, joining latents."""

from __future__ import annotations

import torch

from ..vae_core.streaming import engine
from ..vae_core.errors import FrameStreamError
from ..vae_core.sampling.frame_conditioning import FrameConditioning, extension, interpolation, join
from ..vae_core.streaming.inputs import check_latent, require_node_latent
from .host import io
from .registry import register
from .vae_input import VAE_TOOLTIP, prepare_encode, video_vae

FREE_KEY = "framestream_free"  # the same conditioning with no known frame, for FrameStreamUnconditionalGuider
CONTEXT_KEY = "framestream_context_frames"  # on Extend Video's latent, so Join Latents drops exactly those
CATEGORY = "FrameStream/long video"


def _size(name: str, default: int, tooltip: str):
    return io.Int.Input(name, default=default, min=16, max=8192, step=16, tooltip=tooltip)


def perturbation_inputs() -> list:
    return [
        io.Float.Input("perturbation", default=0.0, min=0.0, max=1.0, step=0.01, tooltip=(
            "LVDM's conditional latent perturbation: the known frames' latents are noised to this sigma before use, "
            "so the model does not copy their artefacts. 0 = off (exactly the host's conditioning); Wan was not "
            "trained with it, so start mild (0.02-0.05).")),
        io.Int.Input("perturbation_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                     tooltip="Seed of the perturbation noise (CPU generator: the same on every device)."),
    ]


def conditioning_inputs() -> list:
    return [
        io.Conditioning.Input("positive", tooltip="The prompt (from a Wan text encoder)."),
        io.Conditioning.Input("negative", tooltip="The negative prompt."),
        io.Vae.Input("vae", tooltip=VAE_TOOLTIP + " Image-to-video models use the Wan 2.1 VAE."),
    ]


def known_frames_outputs() -> list:
    """What both conditioning nodes hand the sampler: prompts with the known frames, and an empty latent."""
    return [
        io.Conditioning.Output(display_name="positive", tooltip="Positive with the known frames (and the frame-free "
                                                                "variant for the unconditional guider)."),
        io.Conditioning.Output(display_name="negative", tooltip="Negative with the known frames."),
        io.Latent.Output(display_name="latent", tooltip="An empty latent batch of the right size for the sampler."),
    ]


def _encoder(vae, height: int, width: int):
    model, settings = prepare_encode(vae, height, width, {})
    return lambda chunks, count: engine.encode(model, chunks, settings=settings, frame_count=count)


def _clip_vision_pairs(output, keyframes: int):
    """Per segment, the CLIP-vision tokens of its first and last keyframe side by side (257 + 257), as the
    host's first-last-frame node joins them."""
    states = output.penultimate_hidden_states
    if states.shape[0] != keyframes:
        raise FrameStreamError(f"clip_vision_output holds {states.shape[0]} images but there are {keyframes} "
                               "keyframes; encode the keyframe batch itself with CLIP Vision Encode")
    pairs = type(output)()
    pairs.penultimate_hidden_states = torch.cat([states[:-1], states[1:]], dim=-2)
    return pairs


def _known(conditioning, frames: FrameConditioning, clip_vision=None, free: bool = False):
    values = {"concat_latent_image": frames.concat_latent, "concat_mask": frames.mask}
    if clip_vision is not None:
        values["clip_vision_output"] = clip_vision
    if free:
        values[FREE_KEY] = {"concat_latent_image": frames.free_latent, "concat_mask": frames.free_mask}
    return [[tensor, {**options, **values}] for tensor, options in conditioning]


def _outputs(positive, negative, frames: FrameConditioning, clip_vision, **latent_keys):
    empty = torch.zeros_like(frames.concat_latent)
    return io.NodeOutput(_known(positive, frames, clip_vision, free=True), _known(negative, frames, clip_vision),
                         {"samples": empty, **latent_keys})


@register
class FrameStreamKeyframeInterpolation(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamKeyframeInterpolation",
            display_name="FrameStream Keyframe Interpolation (Wan FLF2V, batched)",
            category=CATEGORY,
            description=(
                "First-last-frame conditioning for every pair of consecutive keyframes as one batch: one sampler "
                "run makes all K-1 segments. Each segment's conditioning is what WanFirstLastFrameToVideo builds for "
                "its two keyframes. Decode with segment_overlap 1 to get one video with every frame once."),
            inputs=[
                *conditioning_inputs(),
                io.Image.Input("keyframes", tooltip="K keyframes in order (K >= 2): your images, an image model's "
                                                    "batch, or every n-th frame of a first pass."),
                _size("width", 832, "Video width; keyframes are centre-cropped and resized."),
                _size("height", 480, "Video height."),
                io.Int.Input("segment_frames", default=81, min=5, max=1025, step=4, tooltip=(
                    "Frames per segment, keyframes included (4k + 1; Wan FLF2V is trained on 81). The video has "
                    "(K-1)(L-1)+1 frames.")),
                *perturbation_inputs(),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True, tooltip=(
                    "CLIP Vision Encode of the keyframe batch (crop: none); FLF2V models need it.")),
            ],
            outputs=known_frames_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, vae, keyframes, width, height, segment_frames, perturbation,
                perturbation_seed, clip_vision_output=None):
        clip_vision = None if clip_vision_output is None else _clip_vision_pairs(clip_vision_output, keyframes.shape[0])
        frames = interpolation(keyframes, segment_frames, width, height, _encoder(vae, height, width), perturbation,
                               perturbation_seed)
        return _outputs(positive, negative, frames, clip_vision)


@register
class FrameStreamExtendVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamExtendVideo",
            display_name="FrameStream Extend Video (Wan I2V, latent hand-off)",
            category=CATEGORY,
            description=(
                "Conditioning that continues a clip from its last latent frames, handed over as latents (no decode "
                "and re-encode, so no colour drift from pixel round trips). Sample, then Join Latents to get one "
                "latent for the whole video."),
            inputs=[
                *conditioning_inputs(),
                io.Latent.Input("samples", tooltip="The clip to continue (a sampler's output or a joined latent)."),
                io.Int.Input("length", default=81, min=5, max=1025, step=4,
                             tooltip="Frames of the new clip, context included (4k + 1)."),
                io.Int.Input("context_frames", default=1, min=1, max=64, tooltip=(
                    "Latent frames of the clip's end given as known (each is 4 video frames). 1-2 keeps motion "
                    "going.")),
                *perturbation_inputs(),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True, tooltip=(
                    "CLIP Vision Encode of a reference image (I2V models need one).")),
            ],
            outputs=known_frames_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, vae, samples, length, context_frames, perturbation, perturbation_seed,
                clip_vision_output=None):
        previous, model = samples["samples"], video_vae(vae)
        require_node_latent(previous, model)
        previous = check_latent(model, previous)
        height, width = previous.shape[-2] * model.spatial_ratio, previous.shape[-1] * model.spatial_ratio
        frames = extension(previous, context_frames, length, _encoder(vae, height, width), height, width,
                           perturbation, perturbation_seed)
        # samplers keep extra latent keys: Join Latents reads how many context frames to drop
        return _outputs(positive, negative, frames, clip_vision_output, **{CONTEXT_KEY: context_frames})


@register
class FrameStreamJoinLatents(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamJoinLatents",
            display_name="FrameStream Join Latents (extension)",
            category=CATEGORY,
            description="One latent from a clip and its continuation, without the context frames the continuation "
                        "repeats.",
            inputs=[
                io.Latent.Input("previous", tooltip="The clip that was extended."),
                io.Latent.Input("continuation", tooltip="The sampler's output for the extension."),
                io.Int.Input("context_frames", default=-1, min=-1, max=64, optional=True, tooltip=(
                    "-1: what Extend Video used (the sampler's latent carries it). Set it only for a continuation "
                    "saved and loaded again.")),
            ],
            outputs=[io.Latent.Output(tooltip="The whole video's latent; decode it in one go (one causal stream, no "
                                              "decoder restart at the join).")],
        )

    @classmethod
    def execute(cls, previous, continuation, context_frames=-1):
        carried = continuation.get(CONTEXT_KEY)
        if context_frames < 0 and carried is None:
            raise FrameStreamError("the continuation does not say how many context frames it repeats (it was saved "
                                   "and loaded, or did not come from Extend Video); set context_frames")
        if context_frames >= 0 and carried is not None and context_frames != carried:
            raise FrameStreamError(f"context_frames is {context_frames} but Extend Video used {carried}; "
                                   "set -1 to use Extend Video's")
        context = carried if context_frames < 0 else context_frames
        return io.NodeOutput({"samples": join(previous["samples"], continuation["samples"], context)})
