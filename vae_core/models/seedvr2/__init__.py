"""SeedVR2's video VAE: causal convs, norms and attention per frame (streams exactly, the host is the reference)."""

from ..family import Family
from . import checkpoints

FAMILY = Family("SeedVR2 VAE", checkpoints.is_seedvr2, checkpoints.build_seedvr2)
