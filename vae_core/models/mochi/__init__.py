"""Mochi 1: causal convs, GroupNorm per frame (streams exactly), causal attention over time in the encoder."""

from ..family import Family
from . import checkpoints

FAMILY = Family("Mochi VAE", checkpoints.recognises, checkpoints.build_mochi)
