"""FrameStreamVAELoader: video VAE files the host's Load VAE cannot read (CogVideoX, the tiny TAEHV decoders), or
loaded FrameStream's way."""

from __future__ import annotations

import torch

from ..vae_core.models.registry import load_vae, supported
from . import host
from .host import io
from .registry import register

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@register
class FrameStreamVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamVAELoader",
            display_name="FrameStream Load VAE",
            category="FrameStream",
            description=(f"Loads a VAE ({supported()}) from models/vae or a tiny decoder from models/vae_approx for "
                         "the FrameStream nodes, including files the host's Load VAE cannot read (CogVideoX, TAEHV). "
                         "A TAEHV file (taew2_1, taew2_2, taehv, taehv1_5, taecvx, taeltx_2) decodes a draft of the "
                         "same LATENT in seconds. Its output feeds FrameStream nodes only."),
            inputs=[
                io.Combo.Input("vae_name", options=host.vae_files(), tooltip=(
                    "A .safetensors VAE file in models/vae (diffusers' or the original layout; the model is "
                    "recognised from its keys), or a tiny decoder in models/vae_approx. A TAEHV file keeps its "
                    "release name (taew2_1 ...): the name says whose latents it reads.")),
                io.Combo.Input("precision", options=["auto", *PRECISIONS], default="auto", tooltip=(
                    "auto: the host's VAE precision for this device (--fp16-vae etc. apply). fp32 is the "
                    "reference.")),
            ],
            outputs=[io.Vae.Output(tooltip="The VAE, for FrameStream's decode and encode nodes (not the host's VAE "
                                           "Decode).")],
        )

    @classmethod
    def execute(cls, vae_name, precision="auto"):
        device, dtype = host.vae_device_and_dtype()
        dtype = PRECISIONS.get(precision, dtype)
        return io.NodeOutput(load_vae(host.vae_path(vae_name), device, dtype).use_host_conventions())
