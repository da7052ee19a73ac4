"""Norms over channels run a band of rows at a time on the CPU: the whole tensor's numbers, to rounding."""

import pytest
import torch
import torch.nn.functional as F

from framestream.vae_core.streaming import channel_norm
from framestream.vae_core.streaming.channel_norm import RMSNorm, rms_over_channels


@pytest.mark.parametrize("shape, dtype", [((1, 24, 3, 37, 29), torch.float32), ((2, 16, 5, 11), torch.float32),
                                          ((1, 24, 2, 19, 23), torch.bfloat16)])
def test_bands_give_the_whole_tensors_numbers(shape, dtype, monkeypatch):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    norm = RMSNorm(shape[1], spatial_dims=len(shape) - 2)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(norm.gamma.shape) + 0.5)
    with torch.no_grad():  # as the engine runs (under autograd the norms run whole)
        monkeypatch.setattr(channel_norm, "BAND_BYTES", 1)  # one row a band
        banded, banded_rms = norm(x), rms_over_channels(x)
        monkeypatch.setattr(channel_norm, "BAND_BYTES", 1 << 40)  # one band
        whole, whole_rms = norm(x), rms_over_channels(x)
    exact = dict(atol=2e-6, rtol=0) if dtype == torch.float32 else dict(atol=0, rtol=0)
    torch.testing.assert_close(banded, whole, **exact)
    torch.testing.assert_close(banded_rms, whole_rms, **exact)
    torch.testing.assert_close(banded, norm(x).detach(), **exact)  # under autograd it runs whole
    assert banded.dtype == banded_rms.dtype == dtype
    # the formulas as diffusers writes them
    expected = F.normalize(x.float(), dim=1) * shape[1] ** 0.5 * norm.gamma
    torch.testing.assert_close(banded.float(), expected, atol=1e-5 if dtype == torch.float32 else 3e-2, rtol=0)
    x32 = x.float()
    expected_rms = x32 * torch.rsqrt(x32.square().mean(1, keepdim=True) + 1e-8)
    torch.testing.assert_close(banded_rms.float(), expected_rms, atol=1e-5 if dtype == torch.float32 else 3e-2, rtol=0)


def test_an_empty_chunk_normalises_to_an_empty_chunk():
    x = torch.randn(1, 8, 0, 4, 4)
    assert RMSNorm(8)(x).shape == x.shape and rms_over_channels(x).shape == x.shape
