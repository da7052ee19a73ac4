"""Image VAEs (SD-style KL autoencoders, Flux 2, TAESD) on frame batches, against diffusers with shared random
weights (reduced widths): decode, encode, the host's and the original layouts, recognisers, tiles, bad input."""

import re

import pytest
import torch

from framestream.vae_core import FrameStreamError, build_vae, decode, encode
from framestream.vae_core.io.video import VideoFileSink
from framestream.vae_core.models import registry
from framestream.vae_core.models.image.checkpoints import original_to_diffusers
from framestream.vae_core.streaming.traits import NormStatistics

from oracle import (FLUX2, IMAGE_VAE, SD, SD3, TINY, diffusers_kl, diffusers_tiny, every_family_fixture,
                    image_to_original, to_host_tiny)

TOL = 1e-4

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny convs: two threads on two busy cores spin slower


@pytest.fixture(scope="module", params=["sd", "sd3", "flux2"])
def kl(request):
    ref = diffusers_kl({"sd": SD, "sd3": SD3, "flux2": FLUX2}[request.param])
    return ref, build_vae(ref.state_dict())


def host_latent(ref, z):
    """The host's LATENT for the VAE's own latent ``z``: as it is, or for Flux 2 cut into 2x2 patches (channel,
    then patch row, then column, as diffusers' Flux 2 pipeline) and normalised by the BatchNorm statistics."""
    if not hasattr(ref, "bn"):
        return z
    n, c, h, w = z.shape
    patches = z.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
    mean = ref.bn.running_mean.view(1, -1, 1, 1)
    return (patches - mean) / torch.sqrt(ref.bn.running_var.view(1, -1, 1, 1) + ref.config.batch_norm_eps)


def as_frames(pixels):
    return ((pixels + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)


def psnr(a, b):
    return (10 * torch.log10(1 / (a - b).square().mean())).item()


def frame_batch(frames, h, w, seed=2):
    return torch.rand(frames, h, w, 3, generator=torch.Generator().manual_seed(seed))


# --- exactness ---------------------------------------------------------------------------------------------------


def test_each_frame_decodes_as_diffusers_decodes_it(kl):
    ref, ours = kl
    z = torch.randn(3, ref.config.latent_channels, 4, 6, generator=torch.Generator().manual_seed(1))
    latent = host_latent(ref, z)
    with torch.no_grad():
        expected = ref.decode(z).sample
        raw = ours.decode_chunk(latent[None].transpose(1, 2))[0].transpose(0, 1)  # before any clamp
    assert raw.shape == expected.shape == (3, 3, 32, 48)
    assert (raw - expected).abs().max().item() <= TOL
    got = decode(ours, latent, frames_per_step=2)  # the engine's path: steps of 2, 1 frames
    assert got.shape == (3, 32, 48, 3)
    assert (got - as_frames(expected)).abs().max().item() <= TOL


def test_each_frame_encodes_to_diffusers_mean(kl):
    ref, ours = kl
    frames = frame_batch(3, 32, 48)
    with torch.no_grad():
        expected = host_latent(ref, ref.encode(frames.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean)
    got = encode(ours, frames, latents_per_step=2)
    assert got.shape == expected.shape == (3, ours.latent_channels, 32 // ours.spatial_ratio, 48 // ours.spatial_ratio)
    assert (got - expected).abs().max().item() <= TOL


def test_structure_comes_from_the_shapes(kl):
    ref, ours = kl
    c = ref.config.latent_channels
    flux2 = hasattr(ref, "bn")
    assert (ours.latent_channels, ours.spatial_ratio, ours.temporal_ratio) == (4 * c if flux2 else c, 16 if flux2 else 8, 1)
    assert ours.cfg.widths == (32, 32, 64, 64) and ours.cfg.layers_per_block == 1
    assert ours.cfg.decoder_block_widths == ((32, 64, 64, 96) if flux2 else (32, 32, 64, 64))
    assert hasattr(ours, "post_quant_conv") == ref.config.use_post_quant_conv
    assert (ours.family, ours.latent_layout, ours.norms.decoder) == (IMAGE_VAE, "frames", "chunk")


# --- the original (LDM / SGM) layout the host loads ----------------------------------------------------------------


@pytest.mark.parametrize("config", [SD, SD3], ids=["sd", "sd3"])
def test_original_layout_is_diffusers_converters_and_loads(config):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    ref = diffusers_kl(config)
    original = image_to_original(ref.state_dict())
    assert "decoder.up.3.block.0.conv1.weight" in original and original["decoder.mid.attn_1.q.weight"].ndim == 4
    theirs = convert_ldm_vae_checkpoint(original, ref.config)
    ours = original_to_diffusers(original)
    assert set(theirs) == set(ours) == set(ref.state_dict())
    assert all(torch.equal(theirs[k], ours[k]) and torch.equal(ours[k], v) for k, v in ref.state_dict().items())
    vae = build_vae({f"first_stage_model.{k}": v for k, v in original.items()}, "sd_vae.safetensors")
    z = torch.randn(2, ref.config.latent_channels, 3, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(decode(vae, z), decode(build_vae(ref.state_dict()), z))


def test_flux2_release_layout_loads():
    """BFL's Flux 2 file keeps the quant convs inside the encoder and decoder, next to the BatchNorm's statistics."""
    ref = diffusers_kl(FLUX2)
    original = image_to_original(ref.state_dict())
    for outer, inner in [("quant_conv.", "encoder.quant_conv."), ("post_quant_conv.", "decoder.post_quant_conv.")]:
        for name in ("weight", "bias"):
            original[inner + name] = original.pop(outer + name)
    assert "bn.running_var" in original
    vae = build_vae(original, "flux2-vae.safetensors")
    z = torch.randn(2, 128, 2, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(decode(vae, z), decode(build_vae(ref.state_dict()), z))


# --- TAESD -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[4, 16])
def tiny(request):
    ref = diffusers_tiny(request.param)
    return ref, build_vae(ref.state_dict())


def test_taesd_matches_diffusers_autoencoder_tiny(tiny):
    ref, ours = tiny
    c = ref.config.latent_channels
    assert (ours.family, ours.latent_channels, ours.spatial_ratio, ours.cfg.width) == ("tiny autoencoder (TAESD)", c, 8, 16)
    assert (ours.cfg.encoder_blocks, ours.cfg.decoder_blocks) == (TINY["num_encoder_blocks"], TINY["num_decoder_blocks"])
    z = torch.randn(3, c, 4, 6, generator=torch.Generator().manual_seed(5))
    frames = frame_batch(3, 32, 48)
    with torch.no_grad():
        expected = ref.decode(z).sample
        raw = ours.decode_chunk(z[None].transpose(1, 2))[0].transpose(0, 1)
        latents = ref.encode(frames.permute(0, 3, 1, 2) * 2 - 1).latents
    assert (raw - expected).abs().max().item() <= TOL
    assert (decode(ours, z) - as_frames(expected)).abs().max().item() <= TOL
    assert (encode(ours, frames) - latents).abs().max().item() <= TOL


def test_taesd_in_the_hosts_layout_decodes_raw_latents():
    """The host decodes a raw latent with TAESD as ``(z - vae_shift) * vae_scale`` (Flux's factors here) and
    encodes back through the inverse."""
    ref = diffusers_tiny(16)
    scale, shift = 0.3611, 0.1159
    ours = build_vae(to_host_tiny(ref.state_dict(), scale, shift), "taef1")
    z = torch.randn(2, 16, 4, 6, generator=torch.Generator().manual_seed(6))
    frames = frame_batch(2, 32, 48)
    with torch.no_grad():
        expected = as_frames(ref.decode((z - shift) * scale).sample)
        latents = ref.encode(frames.permute(0, 3, 1, 2) * 2 - 1).latents / scale + shift
    assert (decode(ours, z) - expected).abs().max().item() <= TOL
    assert (encode(ours, frames) - latents).abs().max().item() <= TOL


def test_taesd_standalone_halves_load():
    """madebyollin's taesd_decoder / taesd_encoder files: one half each, no prefix."""
    ref = diffusers_tiny(4)
    host = to_host_tiny(ref.state_dict(), 1.0, 0.0)
    decoder = build_vae({k[len("taesd_decoder."):]: v for k, v in host.items() if k.startswith("taesd_decoder.")})
    encoder = build_vae({k[len("taesd_encoder."):]: v for k, v in host.items() if k.startswith("taesd_encoder.")})
    z = torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(7))
    frames = frame_batch(2, 32, 48)
    with torch.no_grad():
        expected, latents = as_frames(ref.decode(z).sample), ref.encode(frames.permute(0, 3, 1, 2) * 2 - 1).latents
    assert (decode(decoder, z) - expected).abs().max().item() <= TOL
    assert (encode(encoder, frames) - latents).abs().max().item() <= TOL
    with pytest.raises(FrameStreamError, match="this TAESD file holds only the decoder; load a file with both"):
        encode(decoder, frames)
    with pytest.raises(FrameStreamError, match="this TAESD file holds only the encoder"):
        decode(encoder, z)


# --- recognisers -------------------------------------------------------------------------------------------------------


def test_every_fixture_is_claimed_by_exactly_one_family():
    for what, sd, family in every_family_fixture():
        claimed = [f.name for f in registry.FAMILIES if f.recognises(sd)]
        assert claimed == [family], what
        assert registry.family_of(sd).name == family


def test_video_vaes_in_the_sd_layout_are_not_image_vaes():
    """SVD's VAE and HunyuanVideo 1.5's keep the SD names, with temporal layers or 3D convs."""
    from diffusers import AutoencoderKLTemporalDecoder

    from framestream.vae_core.models import image, taesd

    original = image_to_original(diffusers_kl(SD).state_dict())
    svd_host = dict(original, **{"decoder.mid.block_1.mix_factor": torch.zeros(1),
                                 "decoder.mid.block_1.time_stack.in_layers.0.weight": torch.ones(64)})
    torch.manual_seed(0)
    svd = AutoencoderKLTemporalDecoder(block_out_channels=(32, 64), layers_per_block=1,
                                       down_block_types=("DownEncoderBlock2D",) * 2).state_dict()
    rms_3d = {k.replace("norm1.weight", "norm1.gamma"): v[:, :, None] if k == "decoder.conv_in.weight" else v
              for k, v in original.items()}  # RMS gains and 3D convs in the SD layout: no image VAE
    for sd in (svd_host, svd, rms_3d):
        assert not image.FAMILY.recognises(sd) and not taesd.FAMILY.recognises(sd)
    with pytest.raises(FrameStreamError, match="is not a VAE FrameStream recognises"):
        registry.family_of(rms_3d)


# --- tiles -----------------------------------------------------------------------------------------------------------


def test_tiles_pool_each_frames_statistics():
    """GroupNorm over a frame is not local, so tiles are approximate; pooling each norm's statistics over the
    step's tiles (``NormStatistics("chunk")``) brings them closer than per-tile statistics."""
    ref = diffusers_kl(dict(SD, block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2))
    ours = build_vae(ref.state_dict())
    z = torch.randn(1, 4, 48, 48, generator=torch.Generator().manual_seed(8))
    whole = decode(ours, z)
    pooled = psnr(decode(ours, z, tile=64, overlap=32), whole)
    estimated = psnr(decode(ours, z, tile=64, overlap=32, statistics_passes=1), whole)
    ours.norms = NormStatistics("position")  # each tile on its own
    alone = psnr(decode(ours, z, tile=64, overlap=32), whole)
    print(f"tiled image VAE: {pooled:.1f} dB with pooled statistics ({estimated:.1f} dB estimated in one pass), "
          f"{alone:.1f} dB per tile")
    assert pooled > alone + 2 and pooled > estimated and pooled > 45


def test_taesd_tiles_overlapping_its_reach_are_near_exact():
    """No norms: a tile sees what the whole frame sees wherever its neighbourhood fits inside it, so only the
    faded edges of the overlaps differ."""
    ours = build_vae(diffusers_tiny(4).state_dict())
    z = torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(9))
    whole = decode(ours, z)
    narrow, wide = (psnr(decode(ours, z, tile=104, overlap=o), whole) for o in (16, 32))
    print(f"tiled TAESD: {narrow:.1f} dB at 16 px overlap, {wide:.1f} dB at 32 px")
    assert wide > narrow + 5 and wide > 75


# --- bad input ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd_vae():
    return build_vae(diffusers_kl(SD).state_dict())


@pytest.mark.parametrize("latent, message", [
    (torch.randn(1, 4, 3, 4, 6), f"latent has shape (1, 4, 3, 4, 6), a video latent [B, C, T, H, W]; the {IMAGE_VAE} "
                                 "decodes a batch of image latents [N, 4, H, W], one per frame"),
    (torch.randn(3, 16, 4, 6), f"latent has 16 channels but the {IMAGE_VAE} expects 4; it was made for another model"),
], ids=["video latent", "wrong channels"])
def test_bad_latents_get_one_message_and_write_nothing(sd_vae, latent, message, tmp_path):
    with pytest.raises(FrameStreamError, match=re.escape(message)):
        decode(sd_vae, latent, sink=VideoFileSink(tmp_path / "out.mp4", fps=8))
    assert not list(tmp_path.iterdir())


def test_flux2_wants_the_hosts_patched_latent():
    """diffusers' 32-channel Flux 2 latent is not the host's LATENT."""
    vae = build_vae(diffusers_kl(FLUX2).state_dict())
    with pytest.raises(FrameStreamError, match=re.escape(f"latent has 32 channels but the {IMAGE_VAE} expects 128")):
        decode(vae, torch.randn(1, 32, 4, 6))


def test_bad_image_vae_checkpoints_get_clear_errors():
    from diffusers import AutoencoderKL

    narrow = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4).state_dict()
    with pytest.raises(FrameStreamError, match=re.escape("narrow.safetensors is an image VAE with block widths (8,); "
                                                         "these VAEs (and the host) normalise in 32 groups")):
        build_vae(narrow, "narrow.safetensors")
    rgba = diffusers_kl(dict(SD, in_channels=4, out_channels=4)).state_dict()
    with pytest.raises(FrameStreamError, match="rgba.safetensors is an image VAE for 4-channel images"):
        build_vae(rgba, "rgba.safetensors")
    incomplete = dict(diffusers_kl(SD).state_dict())
    del incomplete["decoder.up_blocks.1.resnets.0.norm2.weight"]
    with pytest.raises(FrameStreamError, match=re.escape(f"cut.safetensors looks like a {IMAGE_VAE} but does not match")):
        build_vae(incomplete, "cut.safetensors")
