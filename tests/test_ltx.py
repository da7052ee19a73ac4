"""The LTX-Video VAE against diffusers' AutoencoderKLLTXVideo with shared random weights (reduced widths)."""

import pytest
import torch

from framestream.vae_core.streaming import engine
from framestream.vae_core.streaming.state import StreamState
from framestream.vae_core import build_vae
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models.ltx.checkpoints import original_to_diffusers
from framestream.vae_core.models.ltx.noise import SpatialNoise

from oracle import LTX_SMALL as SMALL, SMALL_091, SMALL_091_NOISE, SMALL_095, diffusers_ltx, ltx_to_original

TOL = 1e-4


@pytest.fixture(scope="module", params=["0.9.0", "0.9.1", "0.9.5"])
def pair(request):
    config = {"0.9.0": SMALL, "0.9.1": SMALL_091, "0.9.5": SMALL_095}[request.param]
    ref = diffusers_ltx(config)
    ours = build_vae(ref.state_dict())
    ours.decode_timestep = ref_timestep = 0.05 if config.get("timestep_conditioning") else None
    return ref, ours, ref_timestep


def reference_decode(ref, z, timestep):
    temb = None if timestep is None else torch.full((z.shape[0],), timestep)
    with torch.no_grad():
        return ((ref.decode(z, temb=temb).sample + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def test_whole_clip_decode_matches_diffusers(pair):
    ref, ours, timestep = pair
    z = torch.randn(1, 128, 4, 2, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = ref.decode(z, temb=None if timestep is None else torch.tensor([timestep])).sample
        got = ours.decode_chunk(z)
    assert got.shape == expected.shape == (1, 3, 25, 64, 96)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_delayed_stream_equals_the_whole_clip(pair):
    """The decoder looks ahead; streamed with a delay (each conv holds back its look-ahead, steps that feed nothing
    flush the end) it gives the whole-clip frames for any latent frames a step."""
    ref, ours, timestep = pair
    z = torch.randn(1, 128, 14, 2, 2, generator=torch.Generator().manual_seed(3))
    expected = reference_decode(ref, z, timestep)
    for per_step in (1, 3, 14):
        got = engine.decode(ours, z, frames_per_step=per_step)
        assert got.shape == expected.shape == (1 + 8 * 13, 64, 64, 3)
        assert (got - expected).abs().max().item() <= TOL


def test_held_back_frames_are_needed(pair, monkeypatch):
    """Without holding back what a conv looks ahead to (every step padded as if the clip ended there) the frames
    differ: the delay is what makes the stream exact."""
    ref, ours, timestep = pair
    z = torch.randn(1, 128, 14, 2, 2, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(StreamState, "ending", property(lambda self: True))
    got = engine.decode(ours, z, frames_per_step=3)
    assert (got[: len(got) // 2] - reference_decode(ref, z, timestep)[: len(got) // 2]).abs().max().item() > 1e-3


def test_streamed_encode_matches_diffusers(pair):
    ref, ours, _ = pair
    frames = torch.rand(17, 64, 96, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean
    got = engine.encode(ours, frames)
    assert got.shape == expected.shape == (1, 128, 3, 2, 3)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_tiles_get_closer_to_the_whole_frame_as_their_overlap_grows(pair):
    """Tiles start at the last upsampling stage, so their zero-padded edges reach a little into the overlap;
    only the trend is asserted here (LTX-2's tests and figures measure the PSNR)."""
    _, ours, _ = pair
    z = torch.randn(1, 128, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    whole = engine.decode(ours, z)
    narrow, wide = ((engine.decode(ours, z, tile=t, overlap=o) - whole).abs().mean().item()
                    for t, o in ((128, 32), (192, 96)))
    assert narrow > wide > 0
    assert torch.equal(engine.decode(ours, z, tile=256), whole)


@pytest.mark.parametrize("version, config", [("0.9.0", SMALL), ("0.9.1", SMALL_091), ("0.9.1", SMALL_091_NOISE),
                                             ("0.9.5", SMALL_095)])
def test_original_layout_loads_and_agrees_with_diffusers_converter(version, config):
    from diffusers.loaders.single_file_utils import convert_ltx_vae_checkpoint_to_diffusers

    ref = diffusers_ltx(config, seed=7)
    original = ltx_to_original(ref.state_dict(), version)
    for unused in ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means"):  # real files and the host have these
        original[f"per_channel_statistics.{unused}"] = torch.zeros(128)
    if version != "0.9.5":  # diffusers tells 0.9.5 apart by its full width (2048), so only at full size
        converted = convert_ltx_vae_checkpoint_to_diffusers({f"vae.{k}": v for k, v in original.items()})
        ours_renamed = original_to_diffusers(original)
        assert set(converted) == set(ours_renamed)
        assert all(converted[k] is ours_renamed[k] for k in converted)
    ours = build_vae({f"vae.{k}": v for k, v in original.items()})  # single-file checkpoints carry "vae."
    z = torch.randn(1, 128, 2, 2, 2, generator=torch.Generator().manual_seed(8))
    ours.decode_timestep = 0.05
    torch.manual_seed(ours.spatial_noise.seed)  # diffusers draws the noise of a noisy decoder from the global RNG
    with torch.no_grad():
        expected = ref.decode(z, temb=torch.tensor([0.05]) if config.get("timestep_conditioning") else None).sample
        assert (ours.decode_chunk(z) - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_bad_ltx_inputs_get_clear_errors():
    ref = diffusers_ltx(SMALL_091)
    ours = build_vae(ref.state_dict())
    with pytest.raises(FrameStreamError, match="this LTX-Video VAE's decoder is conditioned on a timestep; set "
                                               "decode_timestep"):
        engine.decode(ours, torch.randn(1, 128, 2, 2, 2))
    with pytest.raises(FrameStreamError, match="latent has 16 channels but the LTX-Video VAE expects 128"):
        engine.decode(ours, torch.randn(1, 16, 2, 2, 2))


def test_host_latents_are_normalised_by_the_checkpoint_statistics(pair):
    """ComfyUI's LTX LATENTs are (mean - latents_mean) / latents_std; the nodes set normalized_latents."""
    ref, ours, _ = pair
    gen = torch.Generator().manual_seed(9)
    ours.latents_mean, ours.latents_std = torch.randn(128, generator=gen), torch.rand(128, generator=gen) + 0.5
    frames = torch.rand(9, 64, 64, 3, generator=gen)
    raw = engine.encode(ours, frames)
    try:
        ours.normalized_latents = True
        normalised = engine.encode(ours, frames)
        mean, std = ours.latents_mean.view(1, -1, 1, 1, 1), ours.latents_std.view(1, -1, 1, 1, 1)
        assert torch.allclose(normalised, (raw - mean) / std, atol=1e-5)
        assert torch.allclose(engine.decode(ours, normalised), _raw_decode(ours, raw), atol=1e-5)
    finally:
        ours.normalized_latents = False
        ours.latents_mean, ours.latents_std = torch.zeros(128), torch.ones(128)


def _raw_decode(model, latent):
    model.normalized_latents = False
    try:
        return engine.decode(model, latent)
    finally:
        model.normalized_latents = True


def _pad_reference(ref, mode):
    for conv in ref.modules():
        if isinstance(conv, torch.nn.Conv3d):
            conv.padding_mode = mode
    return ref


def test_spatial_padding_follows_the_config_the_checkpoint_carries(tmp_path):
    """Lightricks' single-file checkpoints say in their metadata how the convs pad (zeros when silent);
    the file loader reads it, and the decode matches diffusers' model padded the same way."""
    import json

    from safetensors.torch import save_file

    from framestream.vae_core import load_vae

    ref = diffusers_ltx(SMALL, seed=3)
    weights = {k: v.contiguous() for k, v in ltx_to_original(ref.state_dict(), "0.9.0").items()}
    z = torch.randn(1, 128, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    decoded = {}
    for name, config in (("silent", {"vae": {"dims": 3}}), ("reflect", {"vae": {"spatial_padding_mode": "reflect"}})):
        save_file(weights, tmp_path / f"{name}.safetensors", metadata={"config": json.dumps(config)})
        with torch.no_grad():
            decoded[name] = load_vae(str(tmp_path / f"{name}.safetensors")).decode_chunk(z)
    with torch.no_grad():
        zeros = ref.decode(z).sample
        reflect = _pad_reference(ref, "reflect").decode(z).sample
    assert (reflect - zeros).abs().max().item() > 10 * TOL * zeros.abs().max().item()  # the setting matters
    assert (decoded["silent"] - zeros).abs().max().item() <= TOL * zeros.abs().max().item()
    assert (decoded["reflect"] - reflect).abs().max().item() <= TOL * reflect.abs().max().item()


def test_bad_padding_settings_get_clear_errors(tmp_path):
    from safetensors.torch import save_file

    from framestream.vae_core import load_vae

    weights = {k: v.contiguous() for k, v in ltx_to_original(diffusers_ltx(SMALL).state_dict(), "0.9.0").items()}
    for name, metadata, message in (
        ("unknown", '{"vae": {"spatial_padding_mode": "mirror"}}', "unknown spatial padding 'mirror' .* expected "
                                                                    "one of zeros, reflect, replicate, circular"),
        ("garbled", "{vae: reflect", "carries a config in its metadata that is not a JSON object"),
    ):
        save_file(weights, tmp_path / f"{name}.safetensors", metadata={"config": metadata})
        with pytest.raises(FrameStreamError, match=message):
            load_vae(str(tmp_path / f"{name}.safetensors"))


def test_decoder_noise_is_diffusers_sequence_and_one_field_per_stream(monkeypatch):
    """0.9.1's noisy decoder: with the same seed the whole-clip decode is diffusers'; every step and tile
    of a streamed decode uses the same fields, so steps stay exact and tiles err far less than with noise
    drawn per call, as diffusers and the host draw it."""
    ref = diffusers_ltx(SMALL_091_NOISE, seed=11)
    ours = build_vae(ref.state_dict())
    ours.decode_timestep = 0.05
    z = torch.randn(1, 128, 3, 4, 4, generator=torch.Generator().manual_seed(12))
    torch.manual_seed(5)
    with torch.no_grad():
        expected = ref.decode(z, temb=torch.tensor([0.05])).sample
        ours.spatial_noise.seed = 5
        assert (ours.decode_chunk(z) - expected).abs().max().item() <= TOL * expected.abs().max().item()

    z = torch.randn(1, 128, 6, 2, 2, generator=torch.Generator().manual_seed(14))
    whole = engine.decode(ours, z, frames_per_step=6)
    assert (engine.decode(ours, z, frames_per_step=1) - whole).abs().max().item() <= TOL  # streamed: the same

    with torch.no_grad():  # noise strong enough to dominate a tile's own error
        for name, param in ours.named_parameters():
            if "per_channel_scale" in name:
                param.mul_(20)
    z = torch.randn(1, 128, 2, 8, 8, generator=torch.Generator().manual_seed(13))
    whole = engine.decode(ours, z)
    shared = (engine.decode(ours, z, tile=192, overlap=96) - whole).abs().mean().item()
    fresh_per_call = lambda noise, index, x: torch.randn(x.shape[-2:], dtype=x.dtype)  # noqa: E731  (diffusers' way)
    monkeypatch.setattr(SpatialNoise, "__call__", fresh_per_call)
    redrawn = (engine.decode(ours, z, tile=192, overlap=96) - whole).abs().mean().item()
    assert 0 < 3 * shared < redrawn


def test_noise_fields_are_sliced_by_the_tile_window():
    from framestream.vae_core.streaming.state import StreamState
    from framestream.vae_core.streaming.window import Window

    noise = SpatialNoise([1, 4], seed=3)
    full = noise.fields((6, 8), torch.device("cpu"), torch.float32)
    assert [f.shape for f in full] == [(6, 8), (24, 32)]
    state = StreamState()
    window = Window(box=(2, 3, 4, 5), owned=(2, 3, 2, 3), frame=(6, 8))
    with state.active(), state.tile(window):
        part = noise(1, torch.zeros(1, 2, 1, 16, 20))
    assert torch.equal(part, full[1][8:24, 12:32])
    assert torch.equal(noise(0, torch.zeros(1, 2, 1, 6, 8)), full[0])  # outside a stream: the whole frame
