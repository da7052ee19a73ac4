"""How many latent frames a step takes when the caller leaves it to the plan (``frames_per_step`` /
``latents_per_step`` None, the default).

A step has fixed costs however small its frames: the engine's Python, and on the CPU one parallel region per
operation whose threads meet at a barrier (on a GPU, one kernel launch each). At small frames (128-256 px) a step
of one latent frame is mostly those costs; at large ones a step of many frames leaves the CPU's caches and gets
slower per frame (docs/benchmarks.md, "Steps sized from the frame"). So a step takes as many latent frames as keep
its finest activation near ``STEP_ELEMENTS`` values, and never more than the clip; the plan
(:func:`memory.plan_decode`) then holds it to the memory budget.

A model whose GroupNorms pool over the whole clip pays a gathering pass over the clip unless the clip is a single
step: the plan decodes a short clip in one step, exactly and with no gathering pass, where that step needs at most
``WHOLE_CLIP_SHARE`` of the budget. Memory still stops growing with the clip's length: a longer clip streams.
"""

from __future__ import annotations

from .model import CausalVideoVAE

# a step's finest activation (channels x pixel frames x pixels): 2^21-2^23 decoded fastest from 128 to 256 px on
# this project's 2-core CPU, in four families (docs/benchmarks.md, "Steps sized from the frame")
STEP_ELEMENTS = 2**22
# a clip-wide GroupNorm's clip is one step (no gathering pass) if that step needs at most this share of the budget
WHOLE_CLIP_SHARE = 0.25


def sized_from_frame(vae: CausalVideoVAE, direction: str, length: int, height: int, width: int) -> int:
    """Latent frames per step that keep a step's finest activation near ``STEP_ELEMENTS`` (1 to ``length``): its
    width per pixel (a patchifying model's finest layers are narrower than its 3 output channels) times the
    step's pixel frames and pixels."""
    finest = vae.finest_width if direction == "decode" else vae.encoder_finest_width
    per_latent = max(finest, 3) * vae.temporal_ratio * height * width
    return max(1, min(length, int(STEP_ELEMENTS // per_latent)))
