"""TAESD: the tiny image autoencoders, convs and ReLUs only, one frame at a time."""

from ..family import Family
from . import checkpoints
from .model import TinyAutoencoder

FAMILY = Family(TinyAutoencoder.family, checkpoints.recognises, checkpoints.build_taesd)
