"""The Mochi VAE against diffusers' AutoencoderKLMochi with shared random weights (reduced widths)."""

import pytest
import torch
from safetensors.torch import save_file

from framestream.vae_core import build_vae, load_vae
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models.mochi import checkpoints
from framestream.vae_core.models.registry import FAMILIES
from framestream.vae_core.quality import psnr
from framestream.vae_core.streaming import engine

from oracle import (MOCHI_SMALL as SMALL, cogvideox_to_original, diffusers_mochi, image_to_original, ltx_to_original,
                    to_genmo, to_host_layout)

TOL = 1e-4

pytestmark = pytest.mark.usefixtures("single_thread")  # small convs: two threads on two busy cores spin slower


@pytest.fixture(scope="module")
def pair():
    ref = diffusers_mochi()
    return ref, build_vae(ref.state_dict())


def as_frames(pixels):
    return ((pixels + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def latent(frames, h=2, w=3, seed=2):
    return torch.randn(1, 12, frames, h, w, generator=torch.Generator().manual_seed(seed))


def test_whole_clip_decode_matches_diffusers(pair):
    ref, ours = pair
    z = latent(4)
    with torch.no_grad():
        expected = ref.decode(z).sample
        got = ours.decode_chunk(z)
    assert got.shape == expected.shape == (1, 3, 19, 16, 24)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


@pytest.mark.parametrize("per_step", [1, 2, 3])
def test_streamed_decode_matches_diffusers(pair, per_step):
    ref, ours = pair
    z = latent(5, seed=3)
    with torch.no_grad():
        expected = as_frames(ref.decode(z).sample)
    got = engine.decode(ours, z, frames_per_step=per_step)
    assert got.shape == expected.shape == (25, 16, 24, 3)  # diffusers' count: 6 per latent frame, the first 1
    assert (got - expected).abs().max().item() <= TOL


def test_frame_counts_are_diffusers(pair):
    ref, ours = pair
    with torch.no_grad():
        for length in (1, 2, 3):
            assert ref.decode(latent(length, 1, 1)).sample.shape[2] == ours.decoded_frames(length) == 6 * length - 5
        for count in (1, 6, 7, 12, 13):
            encoded = ref.encode(torch.zeros(1, 3, count, 8, 8)).latent_dist.mean.shape[2]
            assert encoded == ours.latent_frames(count)


def test_genmos_frame_dropping_differs_over_the_first_frames(pair):
    """genmo's code (and the host's) drops a clip's extra first frames after each unfolding, diffusers after the
    last; the frames dropped early still feed diffusers' causal convs, so the clips differ (same length)."""
    _, ours = pair
    z = latent(3, seed=4)
    diffusers_way = engine.decode(ours, z)
    try:
        genmo_way = engine.decode(ours.drop_first_frames("per_level"), z)
        assert (engine.decode(ours, z, frames_per_step=2) - genmo_way).abs().max().item() <= TOL  # it streams too
    finally:
        ours.drop_first_frames("end")
    assert genmo_way.shape == diffusers_way.shape
    assert (genmo_way - diffusers_way).abs().max().item() > 1e-2


def frames_in(count, h=32, w=48, seed=5):
    return torch.rand(count, h, w, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("per_step", [1, 2])
def test_streamed_encode_matches_diffusers(pair, per_step):
    ref, ours = pair
    frames = frames_in(19)
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean
    got = engine.encode(ours, frames, latents_per_step=per_step)
    assert got.shape == expected.shape == (1, 12, 4, 4, 6)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_the_encoders_attention_streams_exactly_in_tiles():
    """Attention over time mixes no positions: in steps and tiles, each tile reading its box of the kept keys and
    values and appending the part it owns, it equals the whole clip at once (here at twice the grid's
    resolution, as in the encoder's finer levels)."""
    from framestream.vae_core.models.mochi.attention import CausalTimeAttention
    from framestream.vae_core.streaming.state import StreamState
    from framestream.vae_core.streaming.tiles import layout

    torch.manual_seed(11)
    attention = CausalTimeAttention(64, frames_per_latent=1)
    x = torch.randn(1, 64, 7, 20, 24)
    state, tiles, pieces = StreamState(expected_frames=7), layout(10, 12, 6, 2), []
    with torch.no_grad(), state.active():
        whole = attention(x)
        for start, stop in ((0, 1), (1, 4), (4, 7)):
            out = torch.zeros(1, 64, stop - start, 20, 24)
            for window in tiles.windows:
                with state.tile(window):
                    y = attention(x[:, :, start:stop][(..., *window.region(2, window.box))])
                out[(..., *window.region(2, window.owned))] = y[(..., *window.region(2, window.owned, True))]
            state.carries.commit()
            pieces.append(out)
    assert len(tiles.windows) == 6
    assert (torch.cat(pieces, dim=2) - whole).abs().max().item() <= 1e-5
    assert state.carries.growing_bytes() == 20 * 24 * 7 * 2 * 64 * 4  # keys and values, every position and frame, once


def test_tiles_at_the_default_overlap_stay_close_to_the_whole_frame(pair):
    """Each tile's per-frame GroupNorms use the tile's own statistics (NormStatistics "frame": nothing is
    gathered), so tiles are close, not equal."""
    _, ours = pair
    z = latent(2, 18, 18, seed=6)
    assert 45 <= psnr(engine.decode(ours, z, tile=128), engine.decode(ours, z)) < 200


# --- checkpoint layouts -------------------------------------------------------------------------------------


def decoder_part(sd, side="decoder"):
    return {k: v for k, v in sd.items() if k.startswith(side + ".")}


def bare(sd):
    """genmo's release files: each part alone, without its prefix."""
    return {k.split(".", 1)[1]: v for k, v in sd.items()}


def test_the_hosts_layout_is_what_the_host_recognises_and_loads(pair):
    """Keys of the host's own module at full width (comfy/ldm/genmo/vae/model.py, recorded from ComfyUI 0.3.64):
    the markers comfy/sd.py detects, and the qkv matrices; then the reduced model in every layout decodes and
    encodes as diffusers' does."""
    ref, ours = pair
    full = {k: tuple(v.shape) for k, v in to_genmo(diffusers_mochi_meta().state_dict()).items()}
    assert len(full) == 405
    assert full["decoder.blocks.2.blocks.3.stack.5.weight"] == (512, 512, 3, 3, 3)
    assert full["encoder.layers.4.layers.1.attn_block.attn.qkv.weight"] == (384, 128)
    assert full["decoder.blocks.0.0.weight"] == (768, 12, 1, 1, 1) and full["encoder.layers.0.weight"] == (64, 15)
    assert full["decoder.blocks.4.2.stack.5.weight"] == (128, 128, 3, 3, 3)
    assert full["encoder.layers.9.attn_block.attn.out.weight"] == (384, 384)
    genmo = to_genmo(ref.state_dict())
    z, frames = latent(2, seed=7), frames_in(7, 16, 16)
    decoded, encoded = engine.decode(ours, z), engine.encode(ours, frames)
    for layout in (genmo, {f"first_stage_model.{k}": v for k, v in genmo.items()}):
        theirs = build_vae(layout, "mochi_vae.safetensors")
        assert theirs.family == "Mochi VAE"
        assert torch.equal(engine.decode(theirs, z), decoded) and torch.equal(engine.encode(theirs, frames), encoded)
    decoder_file = build_vae(bare(decoder_part(genmo)), "decoder.safetensors")
    assert decoder_file.encoder is None and torch.equal(engine.decode(decoder_file, z), decoded)
    encoder_file = build_vae(bare(decoder_part(genmo, "encoder")), "encoder.safetensors")
    assert encoder_file.decoder is None and torch.equal(engine.encode(encoder_file, frames), encoded)
    assert torch.equal(engine.decode(build_vae(decoder_part(ref.state_dict())), z), decoded)  # diffusers, decoder only


def diffusers_mochi_meta(**config):
    from diffusers import AutoencoderKLMochi

    with torch.device("meta"):
        return AutoencoderKLMochi(**config)


def test_files_of_each_layout_load(pair, tmp_path):
    ref, ours = pair
    genmo = to_genmo(ref.state_dict())
    files = {"diffusion_pytorch_model.safetensors": ref.state_dict(), "mochi_vae.safetensors": genmo,
             "decoder.safetensors": bare(decoder_part(genmo))}
    z = latent(2, seed=8)
    for name, sd in files.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / name)
        loaded = engine.decode(load_vae(str(tmp_path / name)), z)  # unaligned file memory: oneDNN may round apart
        assert (loaded - engine.decode(ours, z)).abs().max().item() <= 1e-6


def other_families():
    """Checkpoints of every other family, in their layouts (keys and shapes only: built on the meta device)."""
    from diffusers import (AutoencoderKL, AutoencoderKLCogVideoX, AutoencoderKLHunyuanVideo,
                           AutoencoderKLHunyuanVideo15, AutoencoderKLLTX2Video, AutoencoderKLLTXVideo,
                           AutoencoderKLTemporalDecoder, AutoencoderKLWan, AutoencoderTiny)

    from framestream.vae_core.models.wan.checkpoints import diffusers_to_original

    with torch.device("meta"):
        models = {"wan": AutoencoderKLWan(base_dim=8, z_dim=16), "hunyuan": AutoencoderKLHunyuanVideo(),
                  "cogvideox": AutoencoderKLCogVideoX(), "ltx": AutoencoderKLLTXVideo(), "sd": AutoencoderKL(),
                  "svd": AutoencoderKLTemporalDecoder(), "taesd": AutoencoderTiny(),
                  "hunyuan15": AutoencoderKLHunyuanVideo15(), "ltx2": AutoencoderKLLTX2Video()}
    sds = {name: model.state_dict() for name, model in models.items()}
    sds.update(wan_original=diffusers_to_original(sds["wan"]), hunyuan_host=to_host_layout(sds["hunyuan"]),
               cogvideox_original=cogvideox_to_original(sds["cogvideox"]),
               ltx_original=ltx_to_original(sds["ltx"], "0.9.0"), sd_original=image_to_original(sds["sd"]))
    return sds


def test_recognition_takes_every_mochi_layout_and_nothing_else():
    sd = diffusers_mochi_meta().state_dict()
    genmo = to_genmo(sd)
    for layout in (sd, decoder_part(sd), decoder_part(sd, "encoder"), genmo, bare(decoder_part(genmo)),
                   bare(decoder_part(genmo, "encoder"))):
        assert [family.name for family in FAMILIES if family.recognises(layout)] == ["Mochi VAE"]
    for name, other in other_families().items():
        assert not checkpoints.recognises(other), name


# --- bad input --------------------------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors(pair, tmp_path):
    ref, ours = pair
    with pytest.raises(FrameStreamError, match="latent has 16 channels but the Mochi VAE expects 12"):
        engine.decode(ours, torch.randn(1, 16, 2, 2, 2))  # a Wan or HunyuanVideo latent
    decoder_only = build_vae(bare(decoder_part(to_genmo(ref.state_dict()))), "decoder.safetensors")
    with pytest.raises(FrameStreamError, match="decoder.safetensors holds only the Mochi VAE's decoder, so it "
                                               "cannot encode; load a file with the encoder too"):
        engine.encode(decoder_only, frames_in(7, 16, 16))
    encoder_only = build_vae(decoder_part(ref.state_dict(), "encoder"), "encoder.safetensors")
    with pytest.raises(FrameStreamError, match="encoder.safetensors holds only the Mochi VAE's encoder"):
        engine.decode(encoder_only, latent(2))


def test_a_structure_no_release_has_is_refused():
    other = diffusers_mochi_meta(**SMALL, temporal_expansions=(1, 2, 2)).state_dict()  # 4x in time
    for layout, name in ((other, "diffusers"), (to_genmo(other), "genmo")):
        with pytest.raises(FrameStreamError, match=rf"v.safetensors looks like a Mochi VAE \({name} layout\) but its "
                                                   r"structure matches no release: its decoder has 3 levels scaling "
                                                   r"time by \(1, 2, 2\)"):
            build_vae(layout, "v.safetensors")
    genmo = to_genmo(diffusers_mochi_meta(**SMALL).state_dict())
    without_proj = {k: v for k, v in genmo.items() if not k.startswith("decoder.blocks.2.proj.")}
    with pytest.raises(FrameStreamError, match=r"looks like a Mochi VAE \(genmo layout\) but is incomplete: missing "
                                               "'decoder.up_blocks.1.proj.weight'"):
        build_vae(without_proj, "v.safetensors")
    extra = dict(genmo, **{"decoder.blocks.0.1.attn_block.norm.weight": torch.ones(128)})  # no release has it
    with pytest.raises(FrameStreamError, match="does not match its architecture"):
        build_vae(extra, "v.safetensors")
    with pytest.raises(FrameStreamError, match=r"Mochi VAE \(genmo layout\) but is incomplete"):
        build_vae({"layers.4.layers.1.attn_block.attn.qkv.weight": torch.ones(4, 4)}, "v.safetensors")


# --- full width ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_width_at_one_latent_pixel():
    """The release's widths and depths (362 M decoder, 97 M encoder parameters) on a tiny frame."""
    ref = diffusers_mochi(dict(), seed=9, std=0.02)
    ours = build_vae(to_genmo(ref.state_dict()), "mochi_vae.safetensors")
    assert ours.cfg == checkpoints.MochiConfig()
    z = latent(2, 1, 1, seed=10)
    frames = frames_in(7, 8, 8)
    with torch.no_grad():
        decoded = as_frames(ref.decode(z).sample)
        encoded = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean
    assert (engine.decode(ours, z) - decoded).abs().max().item() <= TOL
    got = engine.encode(ours, frames)
    assert got.shape == encoded.shape == (1, 12, 2, 1, 1)
    assert (got - encoded).abs().max().item() <= TOL * encoded.abs().max().item()
