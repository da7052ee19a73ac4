"""Frame guidance on a real model: diffusers' WanTransformer3DModel (reduced, I2V layout) as a flow denoiser.

The guider combines denoised predictions ``D = x - sigma * v``; LVDM states
its guidance on the network's outputs, ``(1 + w) eps(z, c) - w eps(z)``. This
runs both on the same model calls and known-frame conditioning (mask and latent
channels, as the host feeds an I2V model) and checks they agree. It holds
because the weights sum to 1; a combination whose weights did not (or with
the frame term's sign flipped) would fail. Text CFG with the host's own CFG
function is checked in the host test (w = 0 is the host's CFGGuider).
"""

import pytest
import torch

from framestream.vae_core.sampling.frame_conditioning import known_mask
from framestream.vae_core.sampling.guidance import combine
from wan_dit import TEXT_TOKENS, wan_i2v

SIGMA = 0.6


@pytest.fixture(scope="module")
def model():
    return wan_i2v(seed=5)


def conditioning(gen, known: bool):
    """The 20 extra channels an I2V model reads: 4 mask channels (1 = known) and the known frames' latent."""
    latent = torch.randn(1, 16, 3, 4, 4, generator=gen)
    mask = 1.0 - known_mask(3, 4, 4, first_pixels=1, last_pixels=1) if known else torch.zeros(1, 4, 3, 4, 4)
    return torch.cat([mask, latent], dim=1)


@pytest.fixture(scope="module")
def calls(model):
    """Velocity predictions for (positive text, known frames), (negative, known) and (positive, no frames)."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(1, 16, 3, 4, 4, generator=gen)
    positive, negative = (torch.randn(1, TEXT_TOKENS, 32, generator=gen) for _ in range(2))
    image = torch.randn(1, 257, 24, generator=gen)
    known, free = conditioning(gen, True), conditioning(gen, False)

    def velocity(text, frames):
        return model(hidden_states=torch.cat([x, frames], dim=1), timestep=torch.tensor([SIGMA * 1000]),
                     encoder_hidden_states=text, encoder_hidden_states_image=image, return_dict=False)[0]

    return x, velocity(positive, known), velocity(negative, known), velocity(positive, free)


def denoised(x, v):
    return x - SIGMA * v


@pytest.mark.parametrize("w", [0.1, 0.5, 2.0])
def test_at_cfg_one_it_is_lvdm_unconditional_guidance_on_model_outputs(calls, w):
    x, pos, neg, free = calls
    lvdm = (1 + w) * pos - w * free  # LVDM: (1 + w) eps(z, c) - w eps(z)
    got = combine(denoised(x, pos), denoised(x, neg), denoised(x, free), cfg=1.0, frame_guidance=w)
    assert torch.allclose(got, denoised(x, lvdm), atol=1e-5)
    assert not torch.allclose(got, denoised(x, pos), atol=1e-3)  # the model's free call really differs
