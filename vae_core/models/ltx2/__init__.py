"""LTX-2 (2.0, 2.3): a causal encoder and a decoder that looks ahead (it streams with a delay), or runs causally."""

from ..family import Family
from . import checkpoints

FAMILY = Family("LTX-2 VAE", checkpoints.recognises, checkpoints.build_ltx2, succeeds="LTX-Video VAE")
