"""Steps sized by the plan (``frames_per_step`` / ``latents_per_step`` None, the default), a clip-wide GroupNorm's
short clip in one step with no gathering pass, and the pooled GroupNorm's fused statistics and normalisation."""

import pytest
import torch
import torch.nn.functional as F

from framestream.vae_core import build_vae
from framestream.vae_core.streaming import engine, group_norm, memory, step_size
from framestream.vae_core.streaming.settings import Settings
from framestream.vae_core.streaming.state import StreamState

from oracle import diffusers_hunyuan, diffusers_svd

TOL = 1e-4


@pytest.fixture(scope="module")
def hunyuan():
    ref = diffusers_hunyuan()
    return ref, build_vae(ref.state_dict())


def steps_run(vae, z, **options) -> int:
    """The progress count's total: every step of every pass."""
    totals = []
    engine.decode(vae, z, progress=lambda done, total, preview: totals.append(total), **options)
    return totals[-1]


def test_small_frames_take_several_latent_frames_a_step_and_decode_the_same(wan21_pair):
    """At 64x48 px the reduced Wan 2.1 decoder's finest activation is 8 x 4 x 64 x 48 values a latent frame: a step
    takes 2^22 of them (the whole 9-frame clip here); at 2048 px one latent frame is already more than that."""
    _, ours = wan21_pair
    small = memory.plan_decode(ours, (1, 16, 9, 6, 8), Settings())
    assert small.advance == 9 and len(small.steps) == 1 and "1 steps of up to 9 latent frames" in small.describe(8)
    assert memory.plan_decode(ours, (1, 16, 9, 256, 256), Settings(tile=256)).advance == 1
    assert memory.plan_decode(ours, (1, 16, 9, 6, 8), Settings(frames_per_step=2)).advance == 2  # as asked
    z = torch.randn(1, 16, 9, 6, 8, generator=torch.Generator().manual_seed(0))
    assert (engine.decode(ours, z) - engine.decode(ours, z, frames_per_step=1)).abs().max().item() <= 1e-5
    frames = torch.rand(17, 48, 64, 3, generator=torch.Generator().manual_seed(1))
    assert memory.plan_encode(ours, 17, 48, 64, Settings()).steps == [(0, 1), (1, 17)]  # the first frame, the rest
    assert (engine.encode(ours, frames) - engine.encode(ours, frames, latents_per_step=1)).abs().max().item() <= 1e-5


def test_sized_steps_shrink_to_fit_the_budget(wan21_pair):
    """A budget the sized step does not fit halves it until it fits (down to one latent frame, then tiles)."""
    _, ours = wan21_pair
    shape = (1, 16, 9, 6, 8)
    one = memory.plan_decode(ours, shape, Settings(frames_per_step=1)).estimate.total
    sized = memory.plan_decode(ours, shape, Settings()).estimate.total
    assert sized > one
    tight = memory.plan_decode(ours, shape, Settings(budget=int((one + sized) / 2 / memory.PLANNED_SHARE)))
    assert 1 <= tight.advance < 9 and tight.estimate.total <= (one + sized) / 2


def test_a_clip_wide_groupnorm_decodes_a_short_clip_in_one_step_without_a_gathering_pass(hunyuan):
    """HunyuanVideo's GroupNorms pool over the whole clip: at 96 px a step would take 3 latent frames, but a clip
    that fits a quarter of the budget in one step is one step (its own statistics are the clip's: no gathering
    pass), equal to diffusers' one call; under a budget it does not fit so, it streams in steps of 3 after a
    gathering pass, close to the same (the later norms' statistics come from the first pass's estimates,
    docs/hunyuan.md) and ten times further off."""
    ref, ours = hunyuan
    z = torch.randn(1, 16, 6, 12, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ((ref.decode(z).sample + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    assert step_size.sized_from_frame(ours, "decode", 6, 96, 96) == 3
    assert steps_run(ours, z) == 1
    assert (engine.decode(ours, z) - expected).abs().max().item() <= TOL
    whole = memory.plan_decode(ours, z.shape, Settings(frames_per_step=6)).estimate.total
    budget = int(2 * whole / memory.PLANNED_SHARE)  # the one step needs half of it: more than a quarter
    plan = memory.plan_decode(ours, z.shape, Settings(budget=budget))
    assert plan.advance == 3 and len(plan.steps) == 2 and not plan.one_piece
    assert steps_run(ours, z, budget=budget) == 2 * 2  # a gathering pass, then the writing one
    assert 10 * TOL < (engine.decode(ours, z, budget=budget) - expected).abs().max().item() <= 50 * TOL


def test_a_clip_wide_groupnorm_encodes_a_short_clip_in_one_step(hunyuan):
    """The encoder's GroupNorms pool over the clip too: a clip that fits is one step, first frame included (no
    gathering pass), equal to diffusers' one call, where steps after a gathering pass are only close."""
    ref, ours = hunyuan
    frames = torch.rand(17, 48, 64, 3, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()
    assert memory.plan_encode(ours, 17, 48, 64, Settings()).steps == [(0, 17)]
    totals = []
    got = engine.encode(ours, frames, progress=lambda done, total, preview: totals.append(total))
    assert totals[-1] == 1 and (got - expected).abs().max().item() <= TOL * expected.abs().max().item()
    stepped = engine.encode(ours, frames, latents_per_step=1)
    assert (stepped - expected).abs().max().item() > 10 * TOL * expected.abs().max().item()


def test_a_short_clip_is_one_window_and_needs_no_gathering_pass():
    """SVD's windows are at most 25 + 2 x 25 latent frames wide: a clip no longer is one window (the whole clip,
    diffusers' one call), decoded once; a longer one is several, after the model's two gathering passes."""
    ref = diffusers_svd()
    ours = build_vae(ref.state_dict())
    z = torch.randn(40, 4, 2, 2, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ((ref.decode(z, num_frames=40).sample + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    assert steps_run(ours, z) == 1
    assert (engine.decode(ours, z) - expected).abs().max().item() <= TOL
    assert steps_run(ours, torch.randn(80, 4, 2, 2)) == 4 * 3  # four windows, each pass


def test_pooled_moments_are_the_float64_sums():
    """The statistics of torch's GroupNorm kernel, as float64 sums: of a tile's owned part (a view, not contiguous)
    and of half-precision activations (read in float32)."""
    x = torch.randn(2, 8, 3, 10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 3 + 2
    part = x.float()[..., 2:7, 1:9]
    got = group_norm.Moments.of(part, 4)
    grouped = part.double().reshape(2, 4, -1)
    assert got.count == grouped.shape[-1]
    assert torch.allclose(got.total, grouped.sum(-1), rtol=1e-6)
    assert torch.allclose(got.squares, grouped.square().sum(-1), rtol=1e-6)
    half = group_norm.Moments.of(x.half(), 4)
    assert torch.allclose(half.total, x.half().double().reshape(2, 4, -1).sum(-1), rtol=1e-6)
    assert group_norm.Moments.of(x[..., :0], 4).count == 0


def test_pooled_normalisation_is_groupnorms_formula():
    """Normalising with given statistics (one fused pass) is GroupNorm's formula: with the tensor's own statistics
    it is torch's GroupNorm."""
    norm = group_norm.GroupNorm(4, 8)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8)), norm.bias.copy_(torch.randn(8))
    x = torch.randn(2, 8, 3, 5, 6, generator=torch.Generator().manual_seed(6)) * 2 + 1
    mean, var = group_norm.Moments.of(x, 4).mean_var()
    expected = F.group_norm(x, 4, norm.weight, norm.bias, norm.eps)
    assert (norm.normalise(x, mean, var) - expected).abs().max().item() <= 1e-5
    state = StreamState(pooling=group_norm.Pooling())  # running statistics over one piece: its own
    with state.active(), torch.no_grad():
        assert (norm(x) - expected).abs().max().item() <= 1e-5


def test_the_step_rule_counts_a_patchifying_models_output_channels():
    """LTX's finest layers are narrower per pixel than its 3 output channels (its last conv is 8 channels over 4x4
    patches): the step rule counts the 3."""

    class Narrow:
        finest_width = 0.5
        encoder_finest_width = 0.5
        temporal_ratio = 8

    assert step_size.sized_from_frame(Narrow(), "decode", 100, 128, 128) == 2**22 // (3 * 8 * 128 * 128)
