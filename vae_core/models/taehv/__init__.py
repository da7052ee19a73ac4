"""TAEHV: madebyollin's tiny video autoencoders, MemBlocks over frames, for previews and drafts."""

from ..family import Family
from . import checkpoints
from .model import TinyVideoAutoencoder

FAMILY = Family(TinyVideoAutoencoder.family, checkpoints.recognises, checkpoints.build_tae)
