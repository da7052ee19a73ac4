"""MiniMax H3's video VAE against diffusers' AutoencoderKLMiniMaxH3 with the same random weights: decoder windows
of 7 latent frames cross-faded, encoder clips of 17 frames, both in the release's own spatial tiles, streamed."""

import os

import pytest
import torch

from framestream.vae_core import DecodeStream, EncodeStream, build_vae, decode, encode
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models import registry
from framestream.vae_core.models.minimax.checkpoints import release_layout

from helpers import assert_damaged_files_named
from oracle import diffusers_minimax, imagenet_to_unit, unit_to_imagenet

TOL = 1e-4
NAME = "MiniMax H3 video VAE"
TILE = 64  # the tests' tiles (the release's are 256 px): frames of a few latent pixels still span several


@pytest.fixture(scope="module")
def pair():
    ref = diffusers_minimax(tile_px=TILE)
    return ref, build_vae({k: v.clone() for k, v in ref.state_dict().items()}).set_tiles(TILE, TILE // 4)


def diffusers_frames(ref, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return imagenet_to_unit(ref.decode(z).sample[0]).permute(1, 2, 3, 0).clamp(0, 1)


def diffusers_latent(ref, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ref.encode(unit_to_imagenet(frames.permute(3, 0, 1, 2))[None]).latent_dist.mode()


def latent(frames: int, h: int = 6, w: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 24, frames, h, w, generator=torch.Generator().manual_seed(seed))


def test_the_random_decoder_is_not_trivial(pair):
    """Frames that the clamp or zeroed blocks would make equal anyway would prove nothing."""
    ref, _ = pair
    frames = diffusers_frames(ref, latent(7))
    assert 0.05 < frames.std().item() and ((frames > 0) & (frames < 1)).float().mean().item() > 0.8


@pytest.mark.parametrize("length", [7, 12, 17])
def test_decode_equals_diffusers_in_its_tiles_and_windows(pair, length):
    """6x5 latent pixels are 96x80 px: 2x2 tiles of 64 px in every window; 5k + 2 latent frames, 17k + 5 frames."""
    ref, ours = pair
    z = latent(length, seed=length)
    expected = diffusers_frames(ref, z)
    assert len(expected) == ours.decoded_frames(length) == 17 * (length // 5) + 5
    got = decode(ours, z)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL


def test_a_frame_within_one_tile_is_decoded_whole(pair):
    ref, ours = pair
    z = latent(7, 3, 2, seed=3)
    assert (decode(ours, z) - diffusers_frames(ref, z)).abs().max().item() <= TOL


def test_two_latent_frames_are_a_padded_window_and_one_an_image(pair):
    """diffusers cannot decode fewer than 7 latent frames; the reference pads 2 with copies of the last (the
    host does), so they are the first 5 frames of the padded window. One latent frame is an image: decoded alone,
    its last frame kept (the host's single-frame path)."""
    ref, ours = pair
    z = latent(2, seed=4)
    padded = torch.cat([z, z[:, :, -1:].expand(-1, -1, 5, -1, -1)], dim=2)
    assert (decode(ours, z) - diffusers_frames(ref, padded)[:5]).abs().max().item() <= TOL
    image = z[:, :, :1]
    with torch.no_grad():
        alone = imagenet_to_unit(ref._decode_clip(image)[0]).permute(1, 2, 3, 0).clamp(0, 1)[-1:]
    assert (decode(ours, image) - alone).abs().max().item() <= TOL


@pytest.mark.parametrize("pieces", [[1] * 12, [3, 4, 5], [12]])
def test_a_stream_gives_each_window_once_its_latent_frames_are_in(pair, pieces):
    ref, ours = pair
    z = latent(12, seed=5)
    expected = diffusers_frames(ref, z)
    for frames in (12, None):
        with DecodeStream(ours, frames=frames) as stream:
            out, start = [], 0
            for n in pieces:
                out.append(stream.push(z[:, :, start : start + n], last=frames is None and start + n == 12))
                start += n
            if frames is not None:
                out.append(stream.flush())
        assert (torch.cat(out) - expected).abs().max().item() <= TOL
        # the first window (7 latent frames) gives 17 frames and holds 5; the second, with the clip's end, 22
        assert [len(o) for o in out if len(o)] == ([39] if len(pieces) == 1 else [17, 22])
    # pushed without saying which piece is the last: flush() lets the held frames out
    stream = DecodeStream(ours)
    out = [stream.push(z[:, :, :7]), stream.push(z[:, :, 7:]), stream.flush()]
    assert [len(o) for o in out] == [17, 17, 5] and (torch.cat(out) - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("frames", [1, 22, 39])
def test_encode_equals_diffusers(pair, frames):
    """A lone frame is one latent frame; 17k + 5 frames are k + 1 clips, the last padded, 5k + 2 latent frames."""
    ref, ours = pair
    x = torch.rand(frames, 96, 80, 3, generator=torch.Generator().manual_seed(frames))
    expected = diffusers_latent(ref, x)
    got = encode(ours, x)
    assert got.shape == expected.shape == (1, 24, ours.latent_frames(frames), 6, 5)
    assert (got - expected).abs().max().item() <= TOL


def test_an_encode_stream_gives_each_clip_once_its_frames_are_in(pair):
    ref, ours = pair
    x = torch.rand(39, 48, 32, 3, generator=torch.Generator().manual_seed(6))
    expected = diffusers_latent(ref, x)
    for frames in (39, None):
        with EncodeStream(ours, frames=frames) as stream:
            parts = [stream.push(x[start : start + 10], last=frames is None and start + 10 >= 39)
                     for start in range(0, 39, 10)]
            if frames is not None:
                parts.append(stream.flush())
        assert [p.shape[2] for p in parts if p.numel()] == [5, 7]  # clips end at frames 17, 34 and 39
        assert (torch.cat([p for p in parts if p.numel()], dim=2) - expected).abs().max().item() <= TOL


def test_frames_beyond_the_last_whole_clip_are_left_out_with_a_warning(pair):
    _, ours = pair
    x = torch.rand(30, 32, 32, 3, generator=torch.Generator().manual_seed(7))
    with pytest.warns(UserWarning, match=r"encoding 22 frames .* out of 30 .* takes 17k \+ 5 \(or 1\) frames"):
        got = encode(ours, x)
    assert (got - encode(ours, x[:22])).abs().max().item() == 0


def test_the_host_conventions_normalise_the_latent_by_the_release_statistics(pair):
    _, ours = pair
    from framestream.vae_core.models.minimax.model import LATENTS_MEAN, LATENTS_STD

    x = torch.rand(22, 32, 32, 3, generator=torch.Generator().manual_seed(8))
    raw = encode(ours, x)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1, 1) for v in (LATENTS_MEAN, LATENTS_STD))
    try:
        ours.configure(normalized_latents=True)
        normalized = encode(ours, x)
        assert (normalized - (raw - mean) / std).abs().max().item() <= TOL
        assert (decode(ours, normalized) - decode(ours.configure(normalized_latents=False), raw)).abs().max() <= TOL
    finally:
        ours.configure(normalized_latents=False)


def test_the_release_layout_is_the_model_own_and_diffusers_converts_to_it(pair):
    """The release interleaves each head's query, key and value in one projection and puts the feed-forward's
    gate first; diffusers splits and swaps them. Built from the release's layout, the model decodes alike."""
    ref, ours = pair
    release = release_layout(ref.state_dict())
    assert set(release) == set(ours.state_dict())
    again = build_vae(release).set_tiles(TILE, TILE // 4)
    z = latent(7, seed=9)
    assert (decode(again, z) - decode(ours, z)).abs().max().item() == 0
    q = ref.state_dict()["decoder.transformer_blocks.0.attn.to_q.weight"]
    assert torch.equal(release["decoder.transformer_blocks.0.attn.to_qkv.weight"][64:128], ref.state_dict()[
        "decoder.transformer_blocks.0.attn.to_k.weight"][:64]) and torch.equal(
        release["decoder.transformer_blocks.0.attn.to_qkv.weight"][192:256], q[64:128])


def test_recognised_as_itself_only_in_both_layouts(pair):
    ref, _ = pair
    for sd in (ref.state_dict(), release_layout(ref.state_dict())):
        assert [f.name for f in registry.FAMILIES if f.recognises(sd)] == [NAME]


@pytest.mark.slow
def test_the_release_tiles_against_one_whole_frame_window():
    """At 384x320 px the release's 256 px tiles (which FrameStream decodes in, as diffusers and the host do) are
    within 45 dB of one untiled window: the seams the release itself has, on these random weights."""
    from framestream.vae_core.quality import psnr

    ref = diffusers_minimax()
    ours = build_vae(ref.state_dict())
    z = latent(7, 24, 20, seed=12)
    tiled = decode(ours, z)
    assert (tiled - diffusers_frames(ref, z)).abs().max().item() <= TOL
    whole = decode(ours.set_tiles(10**6, 64), z)
    ref.disable_tiling()
    assert (whole - diffusers_frames(ref, z)).abs().max().item() <= TOL
    assert psnr(tiled, whole) >= 45


@pytest.mark.slow
def test_the_full_width_release_structure_at_a_tiny_size():
    """The release's widths (encoder 128..1024, decoder 2048 wide in 32 heads), one decoder block."""
    config = dict(layers_per_block=2, decoder_num_layers=1)
    ref = diffusers_minimax(seed=2, tile_px=None, **config)
    ours = build_vae(ref.state_dict())
    assert ours.cfg.widths == (128, 256, 256, 512, 512, 1024) and ours.cfg.heads == 32
    z = latent(7, 2, 1, seed=5)
    assert (decode(ours, z) - diffusers_frames(ref, z)).abs().max().item() <= TOL
    x = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(6))  # reflection needs 2 latent pixels
    assert (encode(ours, x) - diffusers_latent(ref, x)).abs().max().item() <= TOL


def test_bad_inputs_get_one_clear_message(pair):
    ref, ours = pair
    for frames in (3, 9, 10):
        with pytest.raises(FrameStreamError, match=f"the latent has {frames} frames; a {NAME} latent has 5k \\+ 2"):
            decode(ours, latent(frames))
    with pytest.raises(FrameStreamError, match="the latent has 9 frames"):
        with DecodeStream(ours) as stream:
            stream.push(latent(9))
    with pytest.raises(FrameStreamError, match=f"latent has 16 channels but the {NAME} expects 24"):
        decode(ours, torch.randn(1, 16, 7, 2, 2))
    with pytest.raises(FrameStreamError, match=f"frames are 16x16 px; the {NAME} needs at least 32x32"):
        encode(ours, torch.rand(5, 16, 16, 3))  # its deepest convs reflect their edges: two latent pixels
    with pytest.raises(FrameStreamError, match=f"the {NAME} tiles its frames itself .* a tile size of 128 px"):
        decode(ours, latent(7), tile=128)
    from framestream.vae_core.streaming import distributed

    with pytest.raises(FrameStreamError, match=f"the {NAME} tiles its frames itself, .* decode it in one process"):
        distributed.decode(ours, latent(7))
    assert_damaged_files_named(ref.state_dict(), NAME, "post_quant_conv.", "decoder.proj_out.weight")


def test_an_int8_linear_is_the_hosts_integer_product():
    """By hand, for groups of 4: rotate each token's groups by H4 / 2, quantise each token to int8 (its largest
    magnitude to 127), multiply in integers, scale by both scales, add the bias."""
    from framestream.vae_core.models.minimax.quantized import Int8Linear

    gen = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 8, generator=gen)
    layer = Int8Linear(8, 5, group=4)
    layer.weight.copy_(torch.randint(-128, 128, (5, 8), generator=gen, dtype=torch.int8))
    layer.weight_scale.copy_(torch.rand(5, 1, generator=gen) / 100)
    layer.bias.data.copy_(torch.randn(5, generator=gen))
    h = torch.tensor([[1., 1, 1, -1], [1, 1, -1, 1], [1, -1, 1, 1], [-1, 1, 1, 1]]) / 2
    rotated = torch.cat([x[..., :4] @ h, x[..., 4:] @ h], dim=-1).reshape(6, 8)
    scale = rotated.abs().amax(-1, keepdim=True) / 127
    q = torch.round(rotated / scale).clamp(-128, 127)
    expected = (q @ layer.weight.float().T) * scale * layer.weight_scale.T + layer.bias
    assert (layer(x).reshape(6, 5) - expected).abs().max().item() <= 1e-5


def test_the_hosts_int8_decoder_file_loads_and_decodes_close_to_the_float_one(pair):
    """Exactness against the host's own int8 computation is a host test (test_host_video_vaes.py); here: the
    file is read, its layers are int8, and quantisation costs little on these weights."""
    from oracle import minimax_int8_file

    from framestream.vae_core.models.minimax.quantized import Int8Linear
    from framestream.vae_core.quality import psnr

    _, ours = pair
    quantised = build_vae(minimax_int8_file(ours.state_dict())).set_tiles(TILE, TILE // 4)
    assert sum(isinstance(m, Int8Linear) for m in quantised.modules()) == 4 * ours.cfg.decoder_layers
    z = latent(7, seed=11)
    assert psnr(decode(quantised, z), decode(ours, z)) >= 30


def test_quantised_files_of_another_layout_are_named(pair):
    import json

    from oracle import minimax_int8_file

    _, ours = pair
    sd = minimax_int8_file(ours.state_dict())
    other = dict(sd)
    other["decoder.transformer_blocks.0.ff.w1.comfy_quant"] = torch.tensor(
        list(json.dumps({"format": "float8_e4m3fn"}).encode()), dtype=torch.uint8)
    with pytest.raises(FrameStreamError, match="decoder.transformer_blocks.0.ff.w1 quantised as 'float8_e4m3fn'"):
        build_vae(other)
    other = dict(sd)
    other["decoder.proj_out.comfy_quant"] = sd["decoder.transformer_blocks.0.ff.w1.comfy_quant"]
    with pytest.raises(FrameStreamError, match="quantises decoder.proj_out; the MiniMax H3 int8 file"):
        build_vae(other)


def test_the_command_refuses_a_latent_it_cannot_have_made_and_writes_nothing(pair, tmp_path, capsys):
    from safetensors.torch import save_file

    from framestream import cli

    ref, _ = pair
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "vae.safetensors")
    save_file({"latent": latent(9)}, tmp_path / "z.safetensors")
    code = cli.main(["decode", str(tmp_path / "vae.safetensors"), str(tmp_path / "z.safetensors"), "-o",
                     str(tmp_path / "out.mp4")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("framestream: error:")] == [
        f"framestream: error: the latent has 9 frames; a {NAME} latent has 5k + 2 (2, 7, 12, 17, ...) or 1 (an "
        "image), as its encoder makes them: this one was cut or made for another model"]
    assert sorted(os.listdir(tmp_path)) == ["vae.safetensors", "z.safetensors"]
