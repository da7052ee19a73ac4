"""diffusers' AutoencoderKLWan as the reference: random weights and its frame-at-a-time decode loop.

Shared by the tests and by benchmarks/exactness.py.
"""

from __future__ import annotations

import torch

WAN21_SMALL = dict(base_dim=8, z_dim=16)
WAN22_SMALL = dict(base_dim=8, decoder_base_dim=12, z_dim=48, is_residual=True, in_channels=12, out_channels=12,
                   patch_size=2, scale_factor_spatial=16)


def diffusers_wan(config: dict, seed: int = 0):
    """diffusers' AutoencoderKLWan with every parameter random (norm gains too), in eval mode."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    model = AutoencoderKLWan(**config).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed + 1)
    for name, param in model.named_parameters():
        if name.endswith("gamma"):
            param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=gen))
        elif name.endswith("bias"):
            param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return model


@torch.no_grad()
def diffusers_decode_raw(model, z: torch.Tensor) -> torch.Tensor:
    """The reference frame-at-a-time decode, before diffusers' clamp (so no difference hides in saturation)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    model.clear_cache()
    x = model.post_quant_conv(z)
    outs = []
    for i in range(z.shape[2]):
        model._conv_idx = [0]
        outs.append(model.decoder(x[:, :, i : i + 1], feat_cache=model._feat_map, feat_idx=model._conv_idx,
                                  first_chunk=i == 0))
    out = torch.cat(outs, 2)
    model.clear_cache()
    return unpatchify(out, model.config.patch_size) if model.config.patch_size else out
