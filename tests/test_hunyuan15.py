"""The HunyuanVideo 1.5 VAE against diffusers' AutoencoderKLHunyuanVideo15 with shared random weights."""

import math

import pytest
import torch
from safetensors.torch import save_file

from framestream.vae_core import build_vae, load_vae
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models import registry
from framestream.vae_core.models.hunyuan15 import layers
from framestream.vae_core.models.hunyuan15.checkpoints import diffusers_to_original, original_to_diffusers
from framestream.vae_core.quality import psnr
from framestream.vae_core.streaming import engine, probe
from framestream.vae_core.streaming.state import StreamState

from oracle import HV15_SMALL as SMALL, diffusers_hv15, every_family_fixture, scale_of

TOL = 1e-4
NAME = "HunyuanVideo 1.5 VAE"


@pytest.fixture(scope="module")
def pair():
    ref = diffusers_hv15()
    return ref, build_vae(ref.state_dict())


def latent(t, h, w, seed):
    return torch.randn(1, 32, t, h, w, generator=torch.Generator().manual_seed(seed))


def frames_of(video):
    """diffusers' ``[1, 3, T, H, W]`` in [-1, 1] as the engine's ``[T, H, W, 3]`` in [0, 1]."""
    return ((video + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def test_whole_clip_matches_diffusers(pair):
    ref, ours = pair
    assert (ours.family, ours.latent_channels, ours.spatial_ratio, ours.temporal_ratio) == (NAME, 32, 16, 4)
    assert ours.norms.decoder == "position"
    z = latent(3, 2, 3, seed=1)
    x = torch.rand(1, 3, 9, 32, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        expected, got = ref.decode(z).sample, ours.decode_chunk(z)
        assert got.shape == expected.shape == (1, 3, 9, 32, 48)
        assert (got - expected).abs().max().item() <= TOL
        expected, got = ref.encode(x).latent_dist.mode(), ours.encode_chunk(x)
        assert got.shape == expected.shape == (1, 32, 3, 2, 3)
        assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("per_step", [1, 2, 3])
def test_streamed_decode_matches_diffusers(pair, per_step):
    """Causal convs, the first-frame resamplers and the attention's carried keys stream exactly; no gathering
    pass (RMS norms), so one pass of any step size gives diffusers' one-call decode."""
    ref, ours = pair
    z = latent(5, 2, 3, seed=3)
    with torch.no_grad():
        expected = frames_of(ref.decode(z).sample)
    got = engine.decode(ours, z, frames_per_step=per_step)
    assert got.shape == expected.shape == (17, 32, 48, 3)
    assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("per_step", [1, 2])
def test_streamed_encode_matches_diffusers(pair, per_step):
    ref, ours = pair
    frames = torch.rand(17, 32, 48, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).latent_dist.mode()
    got = engine.encode(ours, frames, latents_per_step=per_step)
    assert got.shape == expected.shape == (1, 32, 5, 2, 3)
    assert (got - expected).abs().max().item() <= TOL


def test_attention_carry_is_one_buffer_growing_by_each_step(pair, monkeypatch):
    """Keys and values: 2 x C values per latent pixel and frame, in one buffer allocated for the stream's length
    and never re-concatenated; the plan counts the same bytes."""
    _, ours = pair
    seen = []
    real = layers.growing_carry
    monkeypatch.setattr(layers, "growing_carry", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    z = latent(4, 2, 3, seed=5)
    state = StreamState(expected_frames=4)
    with state.active(), torch.no_grad():
        for step in range(4):
            ours.decode_chunk(z[:, :, step : step + 1])
            state.carries.commit()
            assert state.carries.growing_bytes() == 2 * 64 * 2 * 3 * 4 * (step + 1)
    assert len({kv.data_ptr() for kv in seen}) == 1 and [kv.shape[2] for kv in seen] == [6, 12, 18, 24]
    assert probe.growing_bytes_per_cell(ours) == 2 * 64 * 4


def test_later_latents_never_change_earlier_frames(pair, monkeypatch):
    """The mid-block attention is causal over frames, as in diffusers and Tencent's code; an attention over all
    frames (the host's) would differ from the reference, which this test would notice."""
    ref, ours = pair
    z = latent(3, 2, 2, seed=6)
    with torch.no_grad():
        expected = frames_of(ref.decode(z).sample)
    head = engine.decode(ours, z[:, :, :2])
    assert (head - expected[:5]).abs().max().item() <= TOL
    real = layers.F.scaled_dot_product_attention
    monkeypatch.setattr(layers.F, "scaled_dot_product_attention", lambda q, k, v, attn_mask=None: real(q, k, v))
    assert (engine.decode(ours, z, frames_per_step=3) - expected).abs().max().item() > 10 * TOL


def test_tiles_at_the_default_overlap(pair):
    """A 2x2 grid at the default 64 px overlap (4 latent pixels at 16x) against the whole frame."""
    _, ours = pair
    z = latent(2, 16, 16, seed=7)
    whole = engine.decode(ours, z)
    tiled = engine.decode(ours, z, tile=(256 + 64) // 2)
    assert psnr(tiled, whole) >= 45


def test_a_decoder_without_spatial_reach_tiles_exactly():
    """With every conv's off-centre taps zeroed, tiles see all they need: the tiled decode and encode then equal
    the whole frame's, so every tile reads and writes its carries (and the first-frame resamplers) correctly."""
    ref = diffusers_hv15(seed=8)
    with torch.no_grad():
        for param in ref.parameters():
            if param.ndim == 5 and param.shape[-1] == 3:
                param[..., :, [0, 2]] = 0
                param[..., [0, 2], :] = 0
    ours = build_vae(ref.state_dict())
    z = latent(2, 8, 8, seed=9)
    whole = engine.decode(ours, z)
    for per_step in (1, 2):
        assert (engine.decode(ours, z, tile=96, frames_per_step=per_step) - whole).abs().max().item() <= 1e-5
    untiled = engine.encode(ours, whole)
    assert (engine.encode(ours, whole, tile=96) - untiled).abs().max().item() <= 1e-5


def quick_random(model, seed=0):
    """:func:`scale_of`'s normals for 1.3 billion parameters in seconds: drawn a million at a time and repeated
    with random scales (a prime block length, so no two filters coincide)."""
    gen, block, sd = torch.Generator().manual_seed(seed), 1_000_003, {}
    for key, like in model.state_dict().items():
        n = like.numel()
        values = torch.randn(min(n, block), generator=gen)
        if n > block:
            scales = 1 + 0.5 * torch.randn(math.ceil(n / block), 1, generator=gen)
            values = (values * scales).flatten()[:n]
        sd[key] = values.mul_(scale_of(like)).view(like.shape)
    model.load_state_dict(sd, assign=True)
    return model.eval()


@pytest.mark.slow
def test_full_width_at_one_latent_pixel(monkeypatch):
    """The released widths (128-1024, 1.26 billion parameters) on one latent pixel: 5 frames of 16x16."""
    from diffusers import AutoencoderKLHunyuanVideo15

    # oneDNN reorders each weight on every call: at one latent pixel that costs more than the convs themselves
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)

    with torch.device("meta"):
        ref = AutoencoderKLHunyuanVideo15()
    ref = quick_random(ref)
    ours = build_vae(ref.state_dict())
    assert ours.cfg.widths == (128, 256, 512, 1024, 1024) and ours.cfg.layers_per_block == 2
    z = latent(2, 1, 1, seed=10)
    x = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(11)) * 2 - 1
    with torch.no_grad():
        expected, expected_mean = ref.decode(z).sample, ref.encode(x).latent_dist.mode()
        state, pieces = StreamState(expected_frames=2), []  # the engine's steps, without its plan's probe runs
        with state.active():
            for step in range(2):
                pieces.append(ours.decode_chunk(z[:, :, step : step + 1]))
                state.carries.commit()
        got = torch.cat(pieces, 2)
        assert got.shape == expected.shape == (1, 3, 5, 16, 16)
        assert (got - expected).abs().max().item() <= TOL
        state, pieces = StreamState(expected_frames=2), []
        with state.active():
            for frames in (x[:, :, :1], x[:, :, 1:]):
                pieces.append(ours.encode_chunk(frames))
                state.carries.commit()
        mean = torch.cat(pieces, 2)
    assert (mean - expected_mean).abs().max().item() <= TOL * max(1.0, expected_mean.abs().max().item())


# --- checkpoints ------------------------------------------------------------------------------------------------------

# key names of Tencent's release, which the host's comfy.ldm.hunyuan_video.vae_refiner keeps (read from its source)
ORIGINAL_KEYS = ["encoder.conv_in.conv.weight",
                 "encoder.down.0.block.0.norm1.gamma",
                 "encoder.down.0.block.0.conv1.conv.weight", "encoder.down.3.downsample.conv.conv.weight",
                 "encoder.mid.block_1.norm2.gamma", "encoder.mid.attn_1.norm.gamma", "encoder.mid.attn_1.q.weight",
                 "encoder.mid.attn_1.proj_out.bias", "encoder.mid.block_2.conv2.conv.bias", "encoder.norm_out.gamma",
                 "encoder.conv_out.conv.weight", "decoder.conv_in.conv.weight", "decoder.mid.block_1.norm1.gamma",
                 "decoder.mid.attn_1.v.bias", "decoder.up.0.block.1.conv2.conv.weight",
                 "decoder.up.0.upsample.conv.conv.weight", "decoder.up.4.block.0.norm1.gamma",
                 "decoder.norm_out.gamma", "decoder.conv_out.conv.bias"]


def test_the_original_layout_loads_and_agrees(pair, tmp_path):
    """Tencent's layout (the host's): renamed both ways, from tensors and from files, to the same model."""
    ref, ours = pair
    sd = ref.state_dict()
    original = diffusers_to_original(sd)
    assert set(ORIGINAL_KEYS) <= set(original) and not any("_blocks" in key for key in original)
    assert original["decoder.mid.attn_1.q.weight"].ndim == 5
    assert original["decoder.up.0.upsample.conv.conv.weight"].shape[0] == 64 * 8  # up.0 is the coarsest
    back = original_to_diffusers(original)
    assert list(back) == list(sd) and all(back[k] is sd[k] for k in sd)
    save_file(original, tmp_path / "hunyuanvideo15_vae_fp16.safetensors")
    theirs = load_vae(str(tmp_path / "hunyuanvideo15_vae_fp16.safetensors"))
    assert theirs.family == NAME
    z = latent(2, 2, 2, seed=12)
    assert torch.equal(engine.decode(theirs, z), engine.decode(ours, z))
    frames = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(13))
    assert torch.equal(engine.encode(theirs, frames), engine.encode(ours, frames))


def test_the_hosts_unused_mid_block_layers_are_dropped_from_its_module_only(pair):
    """ComfyUI since 0.4.0 builds the mid resnets with SD's time-embedding projection (never run, never in a
    file): a host module's state dict rebuilds, a file holding such a layer (or any other extra) is refused."""
    ref, ours = pair
    original = diffusers_to_original(ref.state_dict())
    width = original["decoder.mid.block_1.conv1.conv.weight"].shape[0]
    host = dict(original)
    for side in ("encoder", "decoder"):
        for block in ("block_1", "block_2"):
            host[f"{side}.mid.{block}.temb_proj.weight"] = torch.randn(width, 512)
            host[f"{side}.mid.{block}.temb_proj.bias"] = torch.randn(width)
    rebuilt = build_vae(host, "the VAE given to this node", host_module=True)
    assert set(rebuilt.state_dict()) == set(ours.state_dict())
    z = latent(2, 1, 1, seed=16)
    assert torch.equal(engine.decode(rebuilt, z), engine.decode(ours, z))
    with pytest.raises(FrameStreamError, match=r"hv15.safetensors looks like a HunyuanVideo 1.5 VAE but does not "
                                               r"match its architecture \(missing: \[\], unexpected: "
                                               r"\['encoder.mid_block.resnets.0.temb_proj.weight'"):
        build_vae(host, "hv15.safetensors")
    other = dict(host, **{"decoder.mid.block_1.extra.weight": torch.zeros(1)})
    with pytest.raises(FrameStreamError, match=r"unexpected: \['decoder.mid_block.resnets.0.extra.weight'\]"):
        build_vae(other, "the VAE given to this node", host_module=True)


def test_a_conv_shortcut_is_the_originals_nin_shortcut():
    """Without matched channels (not released, but a valid diffusers config) resnets get 1x1x1 shortcuts."""
    ref = diffusers_hv15(dict(SMALL, downsample_match_channel=False, upsample_match_channel=False), seed=14)
    sd = ref.state_dict()
    original = diffusers_to_original(sd)
    assert "decoder.up.2.block.0.nin_shortcut.conv.weight" in original
    ours, theirs = build_vae(sd), build_vae(original)
    assert not ours.cfg.upsample_match_channel and not ours.cfg.downsample_match_channel
    z = latent(2, 1, 1, seed=15)
    with torch.no_grad():
        expected = frames_of(ref.decode(z).sample)
    assert (engine.decode(theirs, z) - expected).abs().max().item() <= TOL


def test_recognition_is_precise(pair):
    """Exactly this family takes both layouts; it claims no other family's file (HunyuanVideo 1.0's has 16 latent
    channels and GroupNorms, in either layout)."""
    ref, _ = pair
    for sd in (ref.state_dict(), diffusers_to_original(ref.state_dict())):
        assert [f.name for f in registry.FAMILIES if f.recognises(sd)] == [NAME]
    ours = next(f for f in registry.FAMILIES if f.name == NAME)
    for what, sd, family in every_family_fixture():
        assert not ours.recognises(sd), what


def test_bad_inputs_get_clear_errors(pair):
    ref, ours = pair
    with pytest.raises(FrameStreamError, match="latent has 16 channels but the HunyuanVideo 1.5 VAE expects 32"):
        engine.decode(ours, torch.randn(1, 16, 2, 2, 2))  # a HunyuanVideo 1.0 latent
    sd = dict(ref.state_dict())
    missing = {k: v for k, v in sd.items() if not k.startswith("decoder.up_blocks.2.resnets.1.")}
    with pytest.raises(FrameStreamError, match=r"hv15.safetensors looks like a HunyuanVideo 1.5 VAE but does not "
                                               r"match its architecture \(missing: \['decoder.up_blocks.2.resnets.1"):
        build_vae(missing, "hv15.safetensors")
    no_time = dict(sd, **{"decoder.up_blocks.1.upsamplers.0.conv.conv.weight": torch.zeros(128, 64, 3, 3, 3),
                          "decoder.up_blocks.1.upsamplers.0.conv.conv.bias": torch.zeros(128)})
    with pytest.raises(FrameStreamError, match=r"its resamplers \(decoder space\+time/space/space/space/-, encoder "
                                               r"space/space/space\+time/space\+time/-\) are not the 16x16 spatial, "
                                               r"4x temporal design"):
        build_vae(no_time, "hv15.safetensors")
    decoder_only = {k: v for k, v in sd.items() if k.startswith("decoder.")}
    with pytest.raises(FrameStreamError, match="has no encoder down blocks"):
        build_vae(decoder_only, "hv15.safetensors")
