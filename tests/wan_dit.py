"""A reduced-width diffusers WanTransformer3DModel (I2V layout) with random weights, shared by the DiT tests."""

import torch

TEXT_TOKENS = 512  # diffusers' Wan attention takes the last 512 context tokens as text


def wan_i2v(seed=0, image=True):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    extra = dict(image_dim=24, added_kv_proj_dim=16) if image else {}
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=36,
                                  out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=3, **extra)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():  # zero-initialised gates and biases would hide mistakes
            param.copy_(0.2 * torch.randn(param.shape, generator=gen))
    return model.eval().requires_grad_(False)
