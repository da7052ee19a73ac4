"""Kandinsky 6's video VAE (KVAE): causal convs, GroupNorm over each of the release's own chunks."""

from ..family import Family
from . import checkpoints

FAMILY = Family("Kandinsky 6 video VAE", checkpoints.is_kandinsky, checkpoints.build_kandinsky)
