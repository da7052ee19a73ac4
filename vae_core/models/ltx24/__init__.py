"""LTX-2's diffusion decoder (the host's LTX 2.4 VAE): attention blocks upsample the latent into a context, and
one denoising pass turns noise into the frames; streamed block by block, exactly."""

from ..family import Family
from . import checkpoints

# its file holds an LTX-2 encoder too, in LTX-Video's names: where both recognise a file, this family knows it
FAMILY = Family(checkpoints.NAME, checkpoints.is_diffusion_decoder, checkpoints.build_diffusion_decoder,
                succeeds="LTX-Video VAE")
