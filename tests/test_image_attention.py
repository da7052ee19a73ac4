"""Image-attention strength λ on diffusers' WanTransformer3DModel (reduced width) with random weights."""

import copy

import pytest
import torch

from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.sampling.image_attention import (ImageStrength, ScaledImageValues, apply_patches,
                                                  image_strength_patches)
from wan_dit import TEXT_TOKENS, wan_i2v

@pytest.fixture(scope="module")
def model():
    return wan_i2v()


def inputs(image_tokens=257, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(1, 36, 2, 4, 4, generator=gen), timestep=torch.tensor([700.0]),
                encoder_hidden_states=torch.randn(1, TEXT_TOKENS, 32, generator=gen),
                encoder_hidden_states_image=torch.randn(1, image_tokens, 24, generator=gen), return_dict=False)


def run(model, **kw):
    return model(**inputs(**kw))[0]


def patched(model, strength, **options):
    control = ImageStrength(strength, **{k: options.pop(k) for k in ("start_sigma", "end_sigma") if k in options})
    ours = copy.deepcopy(model)
    return apply_patches(ours, image_strength_patches(ours, control, **options)), control


def patched_blocks(model):
    return [isinstance(vars(block.attn2.add_v_proj).get("forward"), ScaledImageValues) for block in model.blocks]


def without_image_values(model, blocks=None):
    """The reference for λ = 0: image V projections with zero weight and bias (the branch adds exactly 0)."""
    reference = copy.deepcopy(model)
    for index, block in enumerate(reference.blocks):
        if blocks is None or index in blocks:
            block.attn2.add_v_proj.weight.zero_()
            block.attn2.add_v_proj.bias.zero_()
    return reference


@pytest.mark.parametrize("image_tokens", [257, 514])  # I2V, first-last-frame
def test_strength_one_is_the_unpatched_model_bit_for_bit(model, image_tokens):
    ours, _ = patched(model, 1.0)
    assert torch.equal(run(ours, image_tokens=image_tokens), run(model, image_tokens=image_tokens))


@pytest.mark.parametrize("image_tokens", [257, 514])
def test_strength_zero_is_the_model_without_its_image_branch(model, image_tokens):
    ours, _ = patched(model, 0.0)
    expected = run(without_image_values(model), image_tokens=image_tokens)
    assert torch.equal(run(ours, image_tokens=image_tokens), expected)
    assert not torch.allclose(expected, run(model, image_tokens=image_tokens), atol=1e-3)


def test_cross_attention_output_is_linear_in_strength(model):
    outputs = {}
    for strength in (0.0, 1.0, 0.5, 2.0, -0.7):
        ours, _ = patched(model, strength)
        seen = []
        # block 0: its cross-attention input does not depend on λ (later blocks see earlier blocks' changes)
        hook = ours.blocks[0].attn2.register_forward_hook(lambda module, args, out: seen.append(out))
        run(ours)
        hook.remove()
        outputs[strength] = seen[0]
    base, step = outputs[0.0], outputs[1.0] - outputs[0.0]
    for strength in (0.5, 2.0, -0.7):
        assert (outputs[strength] - (base + strength * step)).abs().max().item() < 1e-5
    assert step.abs().max() > 1e-2


def test_outside_the_sigma_range_the_model_is_untouched(model):
    ours, control = patched(model, 0.3, start_sigma=0.8, end_sigma=0.4)
    control.sigma = 0.9
    assert torch.equal(run(ours), run(model))
    control.sigma = 0.2
    assert torch.equal(run(ours), run(model))
    control.sigma = 0.6
    inside = run(ours)
    reference, _ = patched(model, 0.3)
    assert torch.equal(inside, run(reference)) and not torch.equal(inside, run(model))


def test_only_the_chosen_blocks_are_scaled(model):
    ours, _ = patched(model, 0.0, first_block=1, last_block=1)
    assert torch.equal(run(ours), run(without_image_values(model, blocks={1})))
    assert patched_blocks(ours) == [False, True, False]


def test_parameters_keep_their_names_so_host_weight_patches_still_apply(model):
    ours, _ = patched(model, 0.5)
    assert list(ours.state_dict()) == list(model.state_dict())


def test_patching_an_already_patched_model_does_not_stack_strengths(model):
    once, _ = patched(model, 0.5)
    twice = apply_patches(once, image_strength_patches(once, ImageStrength(0.5)))
    assert torch.equal(run(twice), run(patched(model, 0.5)[0]))


def test_the_original_model_is_unchanged(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = run(model)
    ours, _ = patched(model, 0.0)
    run(ours)
    assert not any(patched_blocks(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(run(model), expected)


def test_a_model_without_an_image_branch_is_refused():
    with pytest.raises(FrameStreamError, match="no image cross-attention .* image-to-video or first-last-frame"):
        image_strength_patches(wan_i2v(image=False), ImageStrength(0.5))


@pytest.mark.parametrize("first, last", [(2, 1), (0, 3), (-1, 1)])
def test_a_block_range_outside_the_model_is_refused(model, first, last):
    with pytest.raises(FrameStreamError, match=r"outside this model's 3 blocks 0\.\.2"):
        image_strength_patches(model, ImageStrength(0.5), first_block=first, last_block=last)


def test_fused_projections_are_refused(model):
    fused = copy.deepcopy(model)
    fused.fuse_qkv_projections()
    with pytest.raises(FrameStreamError, match="unfuse_qkv_projections"):
        image_strength_patches(fused, ImageStrength(0.5))
