"""Image VAEs (SD 1.x/2.x, SDXL, SD3, Flux, Flux 2): 2D, one frame at a time, GroupNorm over each frame."""

from ..family import Family
from . import checkpoints
from .model import ImageVAE

FAMILY = Family(ImageVAE.family, checkpoints.recognises, checkpoints.build_image_vae)
