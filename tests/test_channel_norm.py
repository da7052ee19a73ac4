"""The norms over channels: diffusers' formulas, in any precision, and trainable (the fixtures are trained)."""

import pytest
import torch
import torch.nn.functional as F

from framestream.vae_core.streaming.channel_norm import RMSNorm, rms_over_channels


@pytest.mark.parametrize("shape, dtype", [((1, 24, 3, 37, 29), torch.float32), ((2, 16, 5, 11), torch.float32),
                                          ((1, 24, 2, 19, 23), torch.bfloat16)])
def test_the_norms_are_diffusers_formulas(shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    norm = RMSNorm(shape[1], spatial_dims=len(shape) - 2)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(norm.gamma.shape) + 0.5)
        got, got_rms = norm(x), rms_over_channels(x)
    assert got.dtype == got_rms.dtype == dtype
    tolerance = dict(atol=1e-5 if dtype == torch.float32 else 3e-2, rtol=0)
    torch.testing.assert_close(got.float(), F.normalize(x.float(), dim=1) * shape[1] ** 0.5 * norm.gamma, **tolerance)
    x32 = x.float()
    torch.testing.assert_close(got_rms.float(), x32 * torch.rsqrt(x32.square().mean(1, keepdim=True) + 1e-8),
                               **tolerance)


def test_gradients_flow_through_the_norm():
    x = torch.randn(1, 8, 2, 4, 4, requires_grad=True)
    norm = RMSNorm(8)
    norm(x).square().sum().backward()
    assert x.grad is not None and norm.gamma.grad is not None and torch.isfinite(x.grad).all()
