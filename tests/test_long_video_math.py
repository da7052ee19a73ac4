"""Keyframe segment plans, LVDM's latent perturbation and the guidance combination, against hand-computed values."""

import math

import pytest
import torch

from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.sampling.guidance import combine
from framestream.vae_core.sampling.keyframes import output_frames, plan_segments
from framestream.vae_core.sampling.perturbation import perturb


@pytest.mark.parametrize("keys, length", [(2, 5), (3, 9), (5, 81), (7, 17)])
def test_every_output_frame_is_produced_once_and_keyframes_land_on_segment_boundaries(keys, length):
    segments = plan_segments(keys, length)
    written = [frame for segment in segments for frame in segment.kept]
    assert written == list(range((keys - 1) * (length - 1) + 1)) == list(range(output_frames(keys, length)))
    for segment in segments:
        assert (segment.first_key, segment.last_key) == (segment.index, segment.index + 1)
        assert segment.start == segment.first_key * (length - 1)  # its first frame is its first keyframe
        assert segment.start + segment.frames - 1 == segment.last_key * (length - 1)
    assert [s.skip for s in segments] == [0] + [1] * (keys - 2)


@pytest.mark.parametrize("keys, length, message", [
    (1, 9, "at least 2 keyframes, got 1"), (0, 9, "at least 2 keyframes"),
    (3, 8, "4k \\+ 1 pixel frames .* got 8"), (3, 1, "got 1"), (3, 4, "got 4")])
def test_bad_plans_are_refused(keys, length, message):
    with pytest.raises(FrameStreamError, match=message):
        plan_segments(keys, length)


def test_flow_perturbation_is_the_host_noise_scaling_and_reproducible():
    z = torch.randn(2, 16, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(42))
    got = perturb(z, 0.3, seed=42)
    assert torch.allclose(got, 0.7 * z + 0.3 * eps, atol=1e-6)
    assert torch.equal(got, perturb(z, 0.3, seed=42)) and not torch.equal(got, perturb(z, 0.3, seed=43))
    assert torch.equal(perturb(z, 0.0, seed=1), z)


def test_perturbation_noise_has_the_level_asked_for():
    z = torch.zeros(1, 16, 4, 64, 64)
    for kind, sigma, std in (("flow", 0.4, 0.4), ("vp", 0.45, 0.45 / math.sqrt(1 + 0.45**2))):
        noisy = perturb(z, sigma, seed=7, kind=kind)
        assert abs(noisy.mean().item()) < 0.01 and abs(noisy.std().item() / std - 1) < 0.01
    # LVDM's sampling default s = 100: sqrt(alpha_bar) ~ 0.91, i.e. sigma = sqrt(1 / 0.91^2 - 1) ~ 0.456
    ones = torch.ones(1, 1, 1, 128, 128)
    sigma = math.sqrt(1 / 0.91**2 - 1)
    assert abs(perturb(ones, sigma, seed=3, kind="vp").mean().item() - 0.91) < 0.01


def test_only_known_frames_are_perturbed():
    z = torch.randn(1, 4, 5, 3, 3, generator=torch.Generator().manual_seed(1))
    known = torch.tensor([True, False, False, False, True])
    got = perturb(z, 0.5, seed=9, known=known)
    assert torch.equal(got[:, :, 1:4], z[:, :, 1:4])
    assert torch.equal(got[:, :, known], perturb(z, 0.5, seed=9)[:, :, known])


@pytest.mark.parametrize("sigma, kind, known, message", [
    (1.5, "flow", None, "in \\[0, 1\\], got 1.5"), (-0.1, "vp", None, "0 or more"),
    (0.1, "ddim", None, "'flow' or 'vp'"), (0.1, "flow", torch.tensor([True, False]), "one flag per latent frame \\(5\\)")])
def test_bad_perturbations_are_refused(sigma, kind, known, message):
    with pytest.raises(FrameStreamError, match=message):
        perturb(torch.zeros(1, 4, 5, 2, 2), sigma, 0, known=known, kind=kind)


def test_guidance_is_text_cfg_plus_frame_guidance():
    gen = torch.Generator().manual_seed(0)
    pos, neg, free = (torch.randn(2, 16, 3, 4, 4, generator=gen) for _ in range(3))
    got = combine(pos, neg, free, cfg=5.0, frame_guidance=0.1)
    assert torch.allclose(got, neg + 5.0 * (pos - neg) + 0.1 * (pos - free), atol=1e-6)
    assert torch.allclose(combine(pos, neg, free, 1.0, 0.1), 1.1 * pos - 0.1 * free, atol=1e-6)  # LVDM's form
    assert torch.equal(combine(pos, neg, None, 5.0, 0.0), neg + 5.0 * (pos - neg))
    with pytest.raises(FrameStreamError, match="without known frames"):
        combine(pos, neg, None, 5.0, 0.1)
