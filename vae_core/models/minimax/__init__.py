"""MiniMax H3's video VAE: a causal CNN encoder per 17-frame clip, a ViT decoder over windows of 7 latent frames."""

from ..family import Family
from . import checkpoints

FAMILY = Family("MiniMax H3 video VAE", checkpoints.is_minimax, checkpoints.build_minimax)
