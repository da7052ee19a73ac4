"""LTX-Video 0.9.x: a causal encoder and a decoder that looks ahead (it streams with a delay)."""

from ..family import Family
from . import checkpoints

FAMILY = Family("LTX-Video VAE", checkpoints.recognises, checkpoints.build_ltx)
