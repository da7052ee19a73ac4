"""CogVideoX: causal convs, GroupNorm over each of the model's own decode steps."""

from ..family import Family
from . import checkpoints

FAMILY = Family("CogVideoX VAE", checkpoints.is_cogvideox, checkpoints.build_cogvideox)
