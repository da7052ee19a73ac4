"""HunyuanVideo: causal convs, GroupNorm over the clip (gathered in a first pass), causal attention."""

from ..family import Family
from . import checkpoints

FAMILY = Family("HunyuanVideo VAE", checkpoints.recognises, checkpoints.build_hunyuan)
