"""The TAEHV family (madebyollin's tiny video autoencoders) on the engine: streamed decode and encode against a
whole-clip evaluation (and madebyollin's ``taehv.py`` where ``TAEHV_REFERENCE`` names it), every variant's
structure read off its tensors, tiles, half files, bad input."""

import pytest
import torch
from safetensors.torch import save_file

from framestream.vae_core import FrameStreamError, build_vae, decode, encode
from framestream.vae_core.models import registry
from framestream.vae_core.models.taehv import latent_spaces
from framestream.vae_core.models.taehv.model import TinyVideoConfig
from framestream.vae_core.quality import psnr

import taehv_oracle
from oracle import VARIANTS, random_tensors, tae

TOL = 1e-4

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny convs: two threads on two busy cores spin slower


def latent(vae, frames: int, h: int = 4, w: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, vae.latent_channels, frames, h, w, generator=torch.Generator().manual_seed(seed))


def as_frames(video: torch.Tensor) -> torch.Tensor:
    """``[1, T, 3, H, W]`` -> the engine's ``[T, H, W, 3]``."""
    return video[0].permute(0, 2, 3, 1)


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("per_step", [1, 2, 5])
def test_streamed_decode_equals_the_whole_clip(name, per_step):
    vae = tae(name)
    z = latent(vae, 5)
    want = as_frames(taehv_oracle.decode_video(vae, z.transpose(1, 2)))
    got = decode(vae, z, frames_per_step=per_step)
    assert got.shape == (1 + vae.temporal_ratio * 4, 4 * vae.spatial_ratio, 3 * vae.spatial_ratio, 3)
    assert (got - want).abs().max() < TOL


@pytest.mark.parametrize("name", ["taehv", "taew2_2", "taeltx_2"])
@pytest.mark.parametrize("per_step", [1, 2])
def test_streamed_encode_equals_the_whole_clip(name, per_step):
    vae = tae(name)
    frames = torch.rand(1 + 2 * vae.temporal_ratio, 4 * vae.spatial_ratio, 3 * vae.spatial_ratio, 3,
                        generator=torch.Generator().manual_seed(2))
    want = taehv_oracle.encode_video(vae, frames.permute(0, 3, 1, 2)[None])
    got = encode(vae, frames, latents_per_step=per_step)
    assert got.shape == (1, vae.latent_channels, 3, 4, 3)
    assert (got[0].transpose(0, 1) - want[0]).abs().max() < TOL


def test_encoding_reads_frames_from_a_stream_as_from_memory():
    vae = tae("taehv")
    frames = torch.rand(9, 32, 24, 3, generator=torch.Generator().manual_seed(3))
    chunks = iter([frames[:2], frames[2:7], frames[7:]])
    assert torch.equal(encode(vae, chunks, frame_count=9), encode(vae, frames))


def test_taecvx_keeps_every_frame_of_an_even_clip():
    """TAECVX has TAEHV's shapes; its file name selects CogVideoX's frame count (4n for even n, no trim)."""
    tensors = random_tensors(VARIANTS["taehv"])
    cvx, hv = (build_vae(tensors, f"{name}.safetensors").configure(normalized_latents=True) for name in ("taecvx", "taehv"))
    even, odd = latent(cvx, 4), latent(cvx, 5)
    got = decode(cvx, even, frames_per_step=3)
    assert got.shape[0] == 16 and cvx.decoded_frames(4) == 16
    assert (got - as_frames(taehv_oracle.decode_video(cvx, even.transpose(1, 2), trim=False))).abs().max() < TOL
    assert torch.allclose(decode(cvx, odd), decode(hv, odd), atol=TOL)  # odd lengths are trimmed as TAEHV's
    assert decode(hv, even).shape[0] == 13


@pytest.mark.parametrize("name, normalise", [
    ("taew2_1", lambda z: (z - torch.tensor(latent_spaces.WAN21_MEAN).view(1, -1, 1, 1, 1))
     / torch.tensor(latent_spaces.WAN21_STD).view(1, -1, 1, 1, 1)),
    ("taehv", lambda z: z * 0.476986),
    ("my_renamed_tae", lambda z: z),
])
def test_raw_latents_enter_the_space_the_file_was_trained_in(name, normalise):
    """The host's LATENT (the big VAE's raw latent) is normalised as the host's latent format does before a
    TAE sees it; encoding gives raw latents back."""
    raw, sampled = tae(name, VARIANTS["taehv"], sampled=False), tae(name, VARIANTS["taehv"])
    z = 2 * latent(raw, 3) + 0.5
    assert (decode(raw, z) - decode(sampled, normalise(z))).abs().max() < TOL
    frames = torch.rand(5, 32, 24, 3, generator=torch.Generator().manual_seed(5))
    assert (normalise(encode(raw, frames)) - encode(sampled, frames)).abs().max() < TOL


@pytest.mark.parametrize("name", ["taehv", "taew2_2_super"])
def test_tiles_blend_into_the_whole_frame(name):
    """Random weights reach about 17 latent pixels (ten convs at latent resolution alone); the blend converges to
    the whole frame as the overlap covers more of that reach."""
    vae = tae(name)
    z = latent(vae, 3, 24, 24)
    whole = decode(vae, z)
    near = psnr(whole, decode(vae, z, tile=16 * vae.spatial_ratio, overlap=8 * vae.spatial_ratio))
    far = psnr(whole, decode(vae, z, tile=20 * vae.spatial_ratio, overlap=16 * vae.spatial_ratio))
    assert far > near + 4 and far > (42 if name == "taehv" else 38)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_structure_is_read_off_the_tensors(name):
    cfg = VARIANTS[name]
    vae = tae(name)
    assert vae.cfg == cfg
    assert (vae.latent_channels, vae.spatial_ratio, vae.temporal_ratio) == \
        (cfg.latent_channels, 8 * cfg.patch_size, 8 if name == "taeltx_2" else 4)
    assert registry.family_of(random_tensors(cfg)).name == vae.family


def test_a_decoder_only_file_decodes_and_refuses_to_encode(tmp_path):
    path = tmp_path / "taew2_2_decoder.safetensors"
    save_file(random_tensors(VARIANTS["taew2_2"], drop="encoder."), str(path))
    vae = registry.load_vae(str(path))
    assert vae.encoder is None and decode(vae, latent(vae, 2)).shape[0] == 5
    with pytest.raises(FrameStreamError, match="holds only the decoder"):
        encode(vae, torch.rand(5, 32, 32, 3))


def test_tensors_of_no_known_structure_are_refused():
    tensors = random_tensors(VARIANTS["taehv"])
    tensors["decoder.7.conv.weight"] = torch.randn(3 * 256, 256, 1, 1)  # a TGrow of three frames: no release has one
    with pytest.raises(FrameStreamError, match="not a VAE FrameStream recognises"):
        build_vae(tensors, "odd.safetensors")
    tensors = random_tensors(VARIANTS["taehv"])
    del tensors["decoder.9.conv.2.weight"]
    with pytest.raises(FrameStreamError, match="not a VAE FrameStream recognises"):
        build_vae(tensors, "truncated.safetensors")


def test_a_latent_of_other_channels_is_refused():
    vae = tae("taehv")
    with pytest.raises(FrameStreamError, match="16"):
        decode(vae, torch.randn(1, 48, 2, 4, 3))


# --- against madebyollin/taehv's taehv.py, when TAEHV_REFERENCE names it ---------------------------------------

FULL = {"taehv": TinyVideoConfig(16, 1), "taew2_2": TinyVideoConfig(48, 2), "taehv1_5": TinyVideoConfig(32, 2),
        "taeltx_2": TinyVideoConfig(128, 4, (2, 2, 2), (2, 2, 2)), "taecvx": TinyVideoConfig(16, 1),
        "taew2_2_super": TinyVideoConfig(48, 2, decoder_widths=(512, 256, 128, 64), super=True)}


@pytest.mark.skipif(taehv_oracle.reference() is None, reason="TAEHV_REFERENCE does not name madebyollin's taehv.py")
@pytest.mark.parametrize("name", list(FULL))
def test_equals_the_reference(name, tmp_path):
    reference = taehv_oracle.reference()
    tensors = random_tensors(FULL[name], seed=4)
    torch.save(tensors, tmp_path / f"{name}.pth")
    theirs = reference.TAEHV(checkpoint_path=str(tmp_path / f"{name}.pth")).eval()
    ours = build_vae(tensors, f"{name}.safetensors").configure(normalized_latents=True)
    for frames in (4, 5):
        z = latent(ours, frames, 3, 2, seed=frames)
        with torch.no_grad():
            want = theirs.decode_video(z.transpose(1, 2), parallel=False, show_progress_bar=False)
        assert (taehv_oracle.decode_video(ours, z.transpose(1, 2), trim=want.shape[1] != 4 * frames)
                - want).abs().max() < TOL
        assert (decode(ours, z, frames_per_step=2) - as_frames(want)).abs().max() < TOL
    if "super" in name or "cvx" in name:  # the same encoders as taew2_2's and taehv's
        return
    pixels = torch.rand(1 + 2 * ours.temporal_ratio, 3 * ours.spatial_ratio, 2 * ours.spatial_ratio, 3)
    with torch.no_grad():
        want = theirs.encode_video(pixels.permute(0, 3, 1, 2)[None], parallel=True, show_progress_bar=False)
    assert (taehv_oracle.encode_video(ours, pixels.permute(0, 3, 1, 2)[None]) - want).abs().max() < TOL
    assert (encode(ours, pixels)[0].transpose(0, 1) - want[0]).abs().max() < TOL
