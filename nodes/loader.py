"""FrameStreamVAELoader: video VAE files the host's Load VAE cannot read (CogVideoX, the tiny TAEHV decoders), or
loaded FrameStream's way."""

from __future__ import annotations

import torch

from ..vae_core.models.registry import load_vae, supported
from . import host
from .registry import node

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@node("FrameStream Load VAE")
class FrameStreamVAELoader:
    DESCRIPTION = (f"Loads a VAE ({supported()}) from models/vae or a tiny decoder from models/vae_approx for the "
                   "FrameStream nodes, including files the host's Load VAE cannot read (CogVideoX, TAEHV). A TAEHV "
                   "file (taew2_1, taew2_2, taehv, taehv1_5, taecvx, taeltx_2) decodes a draft of the same LATENT in "
                   "seconds. Its output feeds FrameStream nodes only.")
    CATEGORY = "FrameStream"
    FUNCTION = "load"
    RETURN_TYPES = ("VAE",)
    OUTPUT_TOOLTIPS = ("The VAE, for FrameStream's decode and encode nodes (not the host's VAE Decode).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae_name": (host.vae_files(), {"tooltip": "A .safetensors VAE file in models/vae (diffusers' or the "
                                                       "original layout; the model is recognised from its keys), or a "
                                                       "tiny decoder in models/vae_approx. A TAEHV file keeps its "
                                                       "release name (taew2_1 ...): the name says whose latents it reads."}),
            "precision": (["auto", *PRECISIONS], {"default": "auto",
                                                  "tooltip": "auto: the host's VAE precision for this device "
                                                             "(--fp16-vae etc. apply). fp32 is the reference."}),
        }}

    def load(self, vae_name, precision="auto"):
        device, dtype = host.vae_device_and_dtype()
        dtype = PRECISIONS.get(precision, dtype)
        return (load_vae(host.vae_path(vae_name), device, dtype).use_host_conventions(),)
