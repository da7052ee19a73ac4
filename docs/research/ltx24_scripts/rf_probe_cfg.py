"""Production temporal structure (depths 4,6,4,2,8; kernels 3/3/3/3/11 in time) with tiny channels."""
import torch
import compare as C


def build(T=12, H=1, W=1):
    cfg = C.host_config()
    cfg["decoder"].update({
        "stage_channels": [128, 64, 32, 32, 16], "stage_depths": [4, 6, 4, 2, 8],
        "stage_kernels": [[3, 7, 7], [3, 7, 7], [3, 5, 5], [3, 5, 5], [11, 11, 11]],
        "stage5_kernel": [11, 11, 11],
    })
    hm = C.host_mod.CausalDiffusionVAE(config=cfg).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in hm.named_parameters():
            if not n.startswith("decoder."):
                continue
            if "norm" in n and p.ndim == 1:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "scale_shift_table" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
        hm.per_channel_statistics.get_buffer("mean-of-means").copy_(0.3 * torch.randn(128, generator=g))
        hm.per_channel_statistics.get_buffer("std-of-means").copy_(0.5 + torch.rand(128, generator=g))
    return hm, cfg, (1, 128, T, H, W)
