"""Known-frame conditioning nodes: every keyframe segment in one batch, continuing a clip, joining latents."""

from __future__ import annotations

import torch

from ..vae_core.streaming import engine
from ..vae_core.errors import FrameStreamError
from ..vae_core.sampling.frame_conditioning import FrameConditioning, extension, interpolation, join
from ..vae_core.streaming.inputs import check_latent, require_node_latent
from .registry import node
from .vae_input import VAE_TOOLTIP, prepare_encode, video_vae

FREE_KEY = "framestream_free"  # the same conditioning with no known frame, for FrameStreamUnconditionalGuider
CONTEXT_KEY = "framestream_context_frames"  # on Extend Video's latent, so Join Latents drops exactly those
CATEGORY = "FrameStream/long video"

SIZE = {"default": 832, "min": 16, "max": 8192, "step": 16}
PERTURBATION = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                          "tooltip": "LVDM's conditional latent perturbation: the known frames' latents are noised "
                                     "to this sigma before use, so the model does not copy their artefacts. 0 = off "
                                     "(exactly the host's conditioning); Wan was not trained with it, so start mild "
                                     "(0.02-0.05)."})
SEED = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                "tooltip": "Seed of the perturbation noise (CPU generator: the same on every device)."})
CONDITIONING_INPUTS = {
    "positive": ("CONDITIONING", {"tooltip": "The prompt (from a Wan text encoder)."}),
    "negative": ("CONDITIONING", {"tooltip": "The negative prompt."}),
    "vae": ("VAE", {"tooltip": VAE_TOOLTIP + " Image-to-video models use the Wan 2.1 VAE."}),
}


class KnownFramesConditioning:
    """What both conditioning nodes hand the sampler: prompts with the known frames, and an empty latent."""

    CATEGORY = CATEGORY
    FUNCTION = "condition"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    OUTPUT_TOOLTIPS = ("Positive with the known frames (and the frame-free variant for the unconditional guider).",
                       "Negative with the known frames.", "An empty latent batch of the right size for the sampler.")


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


def _outputs(positive, negative, frames: FrameConditioning, clip_vision):
    empty = torch.zeros_like(frames.concat_latent)
    return (_known(positive, frames, clip_vision, free=True), _known(negative, frames, clip_vision), {"samples": empty})


@node("FrameStream Keyframe Interpolation (Wan FLF2V, batched)")
class FrameStreamKeyframeInterpolation(KnownFramesConditioning):
    DESCRIPTION = (
        "First-last-frame conditioning for every pair of consecutive keyframes as one batch: one sampler run "
        "makes all K-1 segments. Each segment's conditioning is what WanFirstLastFrameToVideo builds for its two "
        "keyframes. Decode with segment_overlap 1 to get one video with every frame once."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **CONDITIONING_INPUTS,
                "keyframes": ("IMAGE", {"tooltip": "K keyframes in order (K >= 2): your images, an image model's "
                                                   "batch, or every n-th frame of a first pass."}),
                "width": ("INT", {**SIZE, "tooltip": "Video width; keyframes are centre-cropped and resized."}),
                "height": ("INT", {**SIZE, "default": 480, "tooltip": "Video height."}),
                "segment_frames": ("INT", {"default": 81, "min": 5, "max": 1025, "step": 4,
                                           "tooltip": "Frames per segment, keyframes included (4k + 1; Wan FLF2V "
                                                      "is trained on 81). The video has (K-1)(L-1)+1 frames."}),
                "perturbation": PERTURBATION,
                "perturbation_seed": SEED,
            },
            "optional": {
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {
                    "tooltip": "CLIP Vision Encode of the keyframe batch (crop: none); FLF2V models need it."}),
            },
        }

    def condition(self, positive, negative, vae, keyframes, width, height, segment_frames, perturbation,
                  perturbation_seed, clip_vision_output=None):
        clip_vision = None if clip_vision_output is None else _clip_vision_pairs(clip_vision_output, keyframes.shape[0])
        frames = interpolation(keyframes, segment_frames, width, height, _encoder(vae, height, width), perturbation,
                               perturbation_seed)
        return _outputs(positive, negative, frames, clip_vision)


@node("FrameStream Extend Video (Wan I2V, latent hand-off)")
class FrameStreamExtendVideo(KnownFramesConditioning):
    DESCRIPTION = (
        "Conditioning that continues a clip from its last latent frames, handed over as latents (no decode and "
        "re-encode, so no colour drift from pixel round trips). Sample, then Join Latents to get one latent for "
        "the whole video."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **CONDITIONING_INPUTS,
                "samples": ("LATENT", {"tooltip": "The clip to continue (a sampler's output or a joined latent)."}),
                "length": ("INT", {"default": 81, "min": 5, "max": 1025, "step": 4,
                                   "tooltip": "Frames of the new clip, context included (4k + 1)."}),
                "context_frames": ("INT", {"default": 1, "min": 1, "max": 64,
                                           "tooltip": "Latent frames of the clip's end given as known (each is 4 "
                                                      "video frames). 1-2 keeps motion going."}),
                "perturbation": PERTURBATION,
                "perturbation_seed": SEED,
            },
            "optional": {
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIP Vision Encode of a reference image "
                                                                         "(I2V models need one)."}),
            },
        }

    def condition(self, positive, negative, vae, samples, length, context_frames, perturbation, perturbation_seed,
                  clip_vision_output=None):
        previous, model = samples["samples"], video_vae(vae)
        require_node_latent(previous, model)
        previous = check_latent(model, previous)
        height, width = previous.shape[-2] * model.spatial_ratio, previous.shape[-1] * model.spatial_ratio
        frames = extension(previous, context_frames, length, _encoder(vae, height, width), height, width,
                           perturbation, perturbation_seed)
        positive, negative, latent = _outputs(positive, negative, frames, clip_vision_output)
        return positive, negative, {**latent, CONTEXT_KEY: context_frames}  # samplers keep extra latent keys


@node("FrameStream Join Latents (extension)")
class FrameStreamJoinLatents:
    DESCRIPTION = "One latent from a clip and its continuation, without the context frames the continuation repeats."
    CATEGORY = CATEGORY
    FUNCTION = "join"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The whole video's latent; decode it in one go (one causal stream, no decoder restart at "
                       "the join).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "previous": ("LATENT", {"tooltip": "The clip that was extended."}),
                "continuation": ("LATENT", {"tooltip": "The sampler's output for the extension."}),
            },
            "optional": {
                "context_frames": ("INT", {"default": -1, "min": -1, "max": 64,
                                           "tooltip": "-1: what Extend Video used (the sampler's latent carries "
                                                      "it). Set it only for a continuation saved and loaded again."}),
            },
        }

    def join(self, previous, continuation, context_frames=-1):
        carried = continuation.get(CONTEXT_KEY)
        if context_frames < 0 and carried is None:
            raise FrameStreamError("the continuation does not say how many context frames it repeats (it was saved "
                                   "and loaded, or did not come from Extend Video); set context_frames")
        if context_frames >= 0 and carried is not None and context_frames != carried:
            raise FrameStreamError(f"context_frames is {context_frames} but Extend Video used {carried}; "
                                   "set -1 to use Extend Video's")
        context = carried if context_frames < 0 else context_frames
        return ({"samples": join(previous["samples"], continuation["samples"], context)},)
