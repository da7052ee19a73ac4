"""Stable Video Diffusion's VAE: the SD image encoder per frame, a temporal decoder in windows with halos."""

from ..family import Family
from . import checkpoints

FAMILY = Family("Stable Video Diffusion VAE", checkpoints.recognises, checkpoints.build_svd)
