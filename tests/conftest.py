"""Test set-up: import the checkout as the package ``framestream``, and build diffusers oracles.

The checkout is imported by path (as ComfyUI imports a custom-node folder), so
the tests exercise the working tree whatever the folder is called.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if "framestream" not in sys.modules or os.path.dirname(sys.modules["framestream"].__file__) != ROOT:
    spec = importlib.util.spec_from_file_location("framestream", os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules["framestream"] = module
    spec.loader.exec_module(module)

torch.set_num_threads(min(2, torch.get_num_threads()))

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


@pytest.fixture(scope="session")
def wan21_pair():
    """(diffusers oracle, our model sharing its weights) for a reduced-width Wan 2.1."""
    from framestream.vae_core.checkpoints import build_wan

    ref = diffusers_wan(WAN21_SMALL)
    return ref, build_wan(ref.state_dict())


@pytest.fixture(scope="session")
def wan22_pair():
    from framestream.vae_core.checkpoints import build_wan

    ref = diffusers_wan(WAN22_SMALL, seed=1)
    return ref, build_wan(ref.state_dict())
