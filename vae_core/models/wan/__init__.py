"""Wan 2.1 / 2.2: RMS norms and causal convs, so it streams exactly."""

from ..family import Family
from . import checkpoints

FAMILY = Family("Wan 2.1 / 2.2 VAE", checkpoints.recognises, checkpoints.build_wan)
