"""The long-video nodes with stand-ins for the host's objects (the real host is in test_host_comfyui.py)."""

import copy
import functools
import types

import pytest
import torch

from helpers import NODES
from framestream.nodes.frame_conditioning import FREE_KEY
from framestream.vae_core.streaming import engine
from framestream.vae_core.demo import fixture_vae, moving_shapes
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.sampling.frame_conditioning import interpolation
from wan_dit import TEXT_TOKENS, wan_i2v

SIZE = 32
PROMPT = [[torch.zeros(1, 4, 8), {"pooled_output": None}]]


@pytest.fixture(scope="module")
def vae():
    return fixture_vae()


def keyframes(count):
    return moving_shapes(count * 4, SIZE, SIZE, seed=1)[::4]


class ClipVisionOutput:
    """Like the host's comfy.clip_vision.Output: made empty, then filled."""

    @classmethod
    def of(cls, states):
        output = cls()
        output.penultimate_hidden_states = states
        return output


def test_keyframe_node_batches_every_segment_and_pairs_clip_vision_tokens(vae):
    states = torch.randn(3, 257, 8)
    positive, negative, latent = NODES["FrameStreamKeyframeInterpolation"].execute(
        PROMPT, PROMPT, vae, keyframes(3), SIZE, SIZE, 9, 0.0, 0, ClipVisionOutput.of(states))
    expected = interpolation(keyframes(3), 9, SIZE, SIZE, lambda c, n: engine.encode(vae, c, frame_count=n))
    assert latent["samples"].shape == (2, 16, 3, 4, 4) and not latent["samples"].any()
    for conditioning in (positive, negative):
        options = conditioning[0][1]
        assert torch.equal(options["concat_latent_image"], expected.concat_latent)
        assert torch.equal(options["concat_mask"], expected.mask)
        tokens = options["clip_vision_output"].penultimate_hidden_states
        assert torch.equal(tokens, torch.stack([torch.cat([states[i], states[i + 1]]) for i in range(2)]))
    assert torch.equal(positive[0][1][FREE_KEY]["concat_latent_image"], expected.free_latent)
    assert FREE_KEY not in negative[0][1] and "concat_mask" not in PROMPT[0][1]  # the input is not modified


def test_clip_vision_of_the_wrong_number_of_images_is_refused(vae):
    with pytest.raises(FrameStreamError, match="holds 1 images but there are 3 keyframes"):
        NODES["FrameStreamKeyframeInterpolation"].execute(PROMPT, PROMPT, vae, keyframes(3), SIZE, SIZE, 9, 0.0,
                                                              0, ClipVisionOutput.of(torch.randn(1, 257, 8)))


def test_extend_then_join_gives_one_latent_with_the_context_once(vae):
    clip = {"samples": engine.encode(vae, moving_shapes(9, SIZE, SIZE))}
    positive, _, latent = NODES["FrameStreamExtendVideo"].execute(PROMPT, PROMPT, vae, clip, 13, 2, 0.0, 0)
    assert latent["samples"].shape == (1, 16, 4, 4, 4)
    assert torch.equal(positive[0][1]["concat_latent_image"][:, :, :2], clip["samples"][:, :, -2:])
    assert latent["framestream_context_frames"] == 2
    continuation = {**latent, "samples": torch.randn(1, 16, 4, 4, 4)}  # samplers keep the latent's other keys
    (joined,) = NODES["FrameStreamJoinLatents"].execute(clip, continuation)
    assert joined["samples"].shape[2] == 3 + 4 - 2
    with pytest.raises(FrameStreamError, match="context_frames is 1 but Extend Video used 2"):
        NODES["FrameStreamJoinLatents"].execute(clip, continuation, 1)
    with pytest.raises(FrameStreamError, match="does not say how many context frames"):
        NODES["FrameStreamJoinLatents"].execute(clip, {"samples": continuation["samples"]})
    (loaded,) = NODES["FrameStreamJoinLatents"].execute(clip, {"samples": continuation["samples"]}, 2)
    assert torch.equal(loaded["samples"], joined["samples"])


def test_extend_refuses_a_latent_of_another_model(vae):
    with pytest.raises(FrameStreamError, match="48 channels but the .* expects 16"):
        NODES["FrameStreamExtendVideo"].execute(PROMPT, PROMPT, vae, {"samples": torch.zeros(1, 48, 3, 4, 4)},
                                                    9, 1, 0.0, 0)


def test_frame_guidance_needs_framestream_conditioning():
    with pytest.raises(FrameStreamError, match="frame_guidance needs conditioning from FrameStream"):
        NODES["FrameStreamUnconditionalGuider"].execute(object(), PROMPT, PROMPT, 5.0, 0.1)
    (guider,) = NODES["FrameStreamUnconditionalGuider"].execute(object(), PROMPT, PROMPT, 5.0, 0.0)
    assert guider.cfg == 5.0


def test_frame_guidance_swaps_in_the_frame_free_conditioning(vae):
    positive, negative, _ = NODES["FrameStreamKeyframeInterpolation"].execute(
        PROMPT, PROMPT, vae, keyframes(2), SIZE, SIZE, 5, 0.0, 0)
    (guider,) = NODES["FrameStreamUnconditionalGuider"].execute(object(), positive, negative, 5.0, 0.1)
    free = guider.original_conds["free"][0][1]
    assert torch.equal(free["concat_latent_image"], positive[0][1][FREE_KEY]["concat_latent_image"])
    assert free["concat_mask"].all()


class ModelPatcher:
    """What a MODEL socket carries, reduced to what the strength node uses."""

    def __init__(self, diffusion_model, shift=1.0):
        self.model = types.SimpleNamespace(diffusion_model=diffusion_model, model_sampling=FlowSampling(shift))
        self.object_patches, self.wrappers = {}, {}

    def get_model_object(self, name):
        return getattr(self.model, name)

    def clone(self):
        other = copy.copy(self)
        other.object_patches = dict(self.object_patches)
        other.wrappers = {kind: {key: list(w) for key, w in keyed.items()} for kind, keyed in self.wrappers.items()}
        return other

    def add_object_patch(self, name, obj):
        self.object_patches[name] = obj

    def add_wrapper_with_key(self, kind, key, wrapper):
        self.wrappers.setdefault(kind, {}).setdefault(key, []).append(wrapper)

    def sample_once(self, sigma, inputs, sampling=None):
        """Applies the object patches to a copy and calls the model through the apply-model wrappers, as the
        host does; ``sampling`` stands for a ModelSampling node placed after the patch."""
        model = copy.deepcopy(self.model.diffusion_model)
        for name, patch in self.object_patches.items():
            parent, _, attribute = name.removeprefix("diffusion_model.").rpartition(".")
            setattr(model.get_submodule(parent), attribute, patch)
        owner = types.SimpleNamespace(model_sampling=sampling or self.model.model_sampling)

        def call(x, t, **c):
            return model(hidden_states=x, timestep=t * 1000, return_dict=False, **c)[0]

        for wrapper in reversed([w for ws in self.wrappers.get("apply_model", {}).values() for w in ws]):
            call = functools.partial(wrapper, Executor(call, owner))
        return call(inputs["hidden_states"], torch.tensor([sigma]), **inputs["c"])


class Executor:
    def __init__(self, call, owner):
        self.call, self.class_obj = call, owner

    def __call__(self, *args, **kwargs):
        return self.call(*args, **kwargs)


class FlowSampling:
    """The host's flow-model percent_to_sigma with a shift."""

    def __init__(self, shift):
        self.shift = shift

    def percent_to_sigma(self, percent):
        t = 1.0 - percent
        return self.shift * t / (1 + (self.shift - 1) * t) if 0 < percent < 1 else float(percent <= 0)


@pytest.fixture(scope="module")
def dit_inputs():
    gen = torch.Generator().manual_seed(3)
    return {"hidden_states": torch.randn(1, 36, 2, 4, 4, generator=gen),
            "c": {"encoder_hidden_states": torch.randn(1, TEXT_TOKENS, 32, generator=gen),
                  "encoder_hidden_states_image": torch.randn(1, 257, 24, generator=gen)}}


def test_strength_node_patches_a_clone_and_scales_only_inside_its_step_range(dit_inputs):
    model = ModelPatcher(wan_i2v())
    (patched,) = NODES["FrameStreamImageAttention"].execute(model, 0.0, 0.5, 1.0)  # sigma 0.5 .. 0
    assert not model.object_patches and not model.wrappers
    assert sorted(patched.object_patches) == [f"diffusion_model.blocks.{i}.attn2.add_v_proj.forward" for i in range(3)]
    (plain,) = NODES["FrameStreamImageAttention"].execute(model, 1.0, 0.0, 1.0)
    (zero,) = NODES["FrameStreamImageAttention"].execute(model, 0.0, 0.0, 1.0)
    early, late = patched.sample_once(0.8, dit_inputs), patched.sample_once(0.3, dit_inputs)
    assert torch.equal(early, plain.sample_once(0.8, dit_inputs))  # outside the range: untouched
    assert torch.equal(late, zero.sample_once(0.3, dit_inputs))
    assert not torch.allclose(late, plain.sample_once(0.3, dit_inputs), atol=1e-3)


def test_the_step_range_follows_a_shift_applied_after_the_node(dit_inputs):
    """end_percent 0.6 is sigma 0.4 unshifted but 0.84 at shift 8 (a ModelSampling node after this one), so a
    step at sigma 0.6 is inside the range unshifted and after it once shifted."""
    model = ModelPatcher(wan_i2v())
    (patched,) = NODES["FrameStreamImageAttention"].execute(model, 0.0, 0.0, 0.6)
    (zero,) = NODES["FrameStreamImageAttention"].execute(model, 0.0, 0.0, 1.0)
    (plain,) = NODES["FrameStreamImageAttention"].execute(model, 1.0, 0.0, 1.0)
    assert torch.equal(patched.sample_once(0.6, dit_inputs), zero.sample_once(0.6, dit_inputs))
    assert torch.equal(patched.sample_once(0.6, dit_inputs, FlowSampling(8.0)), plain.sample_once(0.6, dit_inputs))


def test_strength_node_refuses_a_text_to_video_model_and_a_reversed_range():
    with pytest.raises(FrameStreamError, match="no image cross-attention"):
        NODES["FrameStreamImageAttention"].execute(ModelPatcher(wan_i2v(image=False)), 0.5, 0.0, 1.0)
    with pytest.raises(FrameStreamError, match="block range 5..2 is outside this model's 3 blocks 0..2"):
        NODES["FrameStreamImageAttention"].execute(ModelPatcher(wan_i2v()), 0.5, 0.0, 1.0, first_block=5)
    with pytest.raises(FrameStreamError, match="start_percent 0.8 is after end_percent 0.2"):
        NODES["FrameStreamImageAttention"].execute(ModelPatcher(wan_i2v()), 0.5, 0.8, 0.2)


def test_decode_node_stitches_segments_sharing_their_boundary_frame(vae):
    latents = torch.randn(3, 16, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    (frames,) = NODES["FrameStreamDecode"].execute(vae, {"samples": latents}, segment_overlap=1)
    parts = [engine.decode(vae, latents[i : i + 1]) for i in range(3)]
    assert torch.equal(frames, torch.cat([parts[0], parts[1][1:], parts[2][1:]]))
