"""The LTX-2 VAE against diffusers' AutoencoderKLLTX2Video with shared random weights (reduced widths)."""

import json

import pytest
import torch

from framestream.vae_core import build_vae
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models import ltx, ltx2
from framestream.vae_core.models.ltx2.checkpoints import diffusers_to_original, original_to_diffusers
from framestream.vae_core.models.ltx2.model import LTX2Config, LTX2VideoVAE
from framestream.vae_core.models.registry import family_of
from framestream.vae_core.quality import psnr
from framestream.vae_core.streaming import engine, memory, probe
from framestream.vae_core.streaming.estimate import LIVE_AT_FINEST
from framestream.vae_core.streaming.sinks import CallbackSink
from framestream.vae_core.streaming.carries import CarryStore
from framestream.vae_core.streaming.journal import Journal, peak_kept_cells
from framestream.vae_core.streaming.settings import Settings
from framestream.vae_core.streaming.tiles import layout

from oracle import (CONFIGS, LTX2_COMMON, LTX_SMALL, SMALL_20, SMALL_23T, SMALL_091, SMALL_095, SMALL_NOISE,
                    diffusers_ltx2, ltx_to_original)

TOL = 1e-4
TIMESTEP = 0.05
SEED = 7  # of the decoder noise: ours draws it from its own generator, diffusers from the global one


def causal_metadata(causal=True):
    return {"config": json.dumps({"vae": {"causal_decoder": causal}})}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request):
    config = CONFIGS[request.param]
    ref = diffusers_ltx2(config)
    ours = build_vae(ref.state_dict()).configure(decode_timestep=TIMESTEP, noise_seed=SEED)
    return ref, ours, TIMESTEP if config.get("timestep_conditioning") else None


def reference_frames(ref, z, timestep, causal=None):
    torch.manual_seed(SEED)
    temb = None if timestep is None else torch.full((z.shape[0],), timestep)
    with torch.no_grad():
        return ((ref.decode(z, temb=temb, causal=causal).sample + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def test_whole_clip_decode_matches_diffusers(pair):
    ref, ours, timestep = pair
    z = torch.randn(1, 128, 4, 2, 3, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(SEED)
    with torch.no_grad():
        expected = ref.decode(z, temb=None if timestep is None else torch.tensor([timestep])).sample
        got = ours.decode_chunk(z)
    assert got.shape == expected.shape == (1, 3, 25, 64, 96)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_the_delayed_stream_equals_the_whole_clip(pair):
    """The release's decoder looks ahead; streamed with a delay (each conv holds back its look-ahead, steps that
    feed nothing flush the end) it gives the one-call frames for any latent frames a step; each noise field is
    drawn once for the stream, so the noisy decoder's steps agree as well (tiles: the tiling test)."""
    ref, ours, timestep = pair
    z = torch.randn(1, 128, 10, 2, 2, generator=torch.Generator().manual_seed(3))
    expected = reference_frames(ref, z, timestep)
    assert ours.streaming.delayed and not ours.streaming.causal
    for per_step in (1, 3, 10):
        steps = memory.plan_decode(ours, z.shape, Settings(frames_per_step=per_step)).steps
        assert sum(w.stop - w.start for w in steps) == 10 and steps[-1].start == steps[-1].stop == 10
        got = engine.decode(ours, z, frames_per_step=per_step)
        assert got.shape == expected.shape == (1 + 8 * 9, 64, 64, 3)
        assert (got - expected).abs().max().item() <= TOL, per_step


@pytest.mark.parametrize("per_step", [1, 2])
def test_no_frame_is_decoded_twice_and_no_step_grows(per_step):
    """The finest block makes each of the clip's 73 frames once, and no step more than a step's frames plus the
    one its convs look ahead to, however long the flush of the clip's end takes."""
    ref = diffusers_ltx2(SMALL_20)
    ours = build_vae(ref.state_dict())
    z = torch.randn(1, 128, 10, 2, 2, generator=torch.Generator().manual_seed(3))
    memory.plan_decode(ours, z.shape, Settings(frames_per_step=per_step))  # its probe streams too: before counting
    seen = []
    hook = ours.decoder.up_blocks[-1].register_forward_hook(lambda m, args, out: seen.append(out.shape[2]))
    try:
        got = engine.decode(ours, z, frames_per_step=per_step)
    finally:
        hook.remove()
    assert sum(seen) == 8 * 10 - 7 and max(seen) <= 8 * per_step + 1
    assert len(seen) > -(-10 // per_step)  # the flush took steps of its own
    assert (got - reference_frames(ref, z, None)).abs().max().item() <= TOL


def test_the_plan_counts_the_carries_a_delayed_stream_holds_at_its_peak(monkeypatch):
    """The carries fill as frames reach deeper layers and peak while the end flushes out; a clip shorter than
    the delay never fills them, a longer one peaks as one two latent frames beyond it. The plan's probe gives
    the peak a real stream of the same length reaches."""
    ours = build_vae(diffusers_ltx2(SMALL_20).state_dict())
    peaks = []
    commit = CarryStore.commit
    monkeypatch.setattr(CarryStore, "commit", lambda self: (commit(self), peaks.append(self.carry_bytes())))
    per_cell = {}
    for length in (2, 5, 40):
        per_cell[length] = probe.carry_bytes_per_cell(ours, length=length)
        peaks.clear()
        engine.decode(ours, torch.randn(1, 128, length, 2, 3), tile=None, frames_per_step=1)
        assert max(peaks) == per_cell[length] * 2 * 3, length
    assert per_cell[2] < per_cell[5] < per_cell[40] == probe.carry_bytes_per_cell(ours)


def test_in_tiles_the_plan_counts_the_second_copy_of_the_carries_that_change_shape(monkeypatch):
    """A tiled delayed stream overwrites in place every carry that keeps its shape, keeping aside what later
    tiles read, and writes a carry that changes shape to a second copy adopted at the commit: the probe's peak
    of both copies is the real stream's, and what it keeps aside stays within the plan's room for it."""
    ours = build_vae(diffusers_ltx2(SMALL_20).state_dict())
    peaks, kept = [], []
    commit, keep_for = CarryStore.commit, Journal.keep_for
    monkeypatch.setattr(CarryStore, "commit",
                        lambda self: (peaks.append(self.carry_bytes() + self.pending_bytes()), commit(self)))
    monkeypatch.setattr(Journal, "keep_for", lambda self, *a: (keep_for(self, *a), kept.append(self.kept_bytes())))
    z = torch.randn(1, 128, 30, 5, 6)
    tiled = engine.decode(ours, z, tile=96, overlap=64, frames_per_step=1)
    carries, kept_room = probe.delayed_carries_per_cell(ours, 30), peak_kept_cells(layout(5, 6, 3, 2).windows)
    assert max(peaks) == carries.in_tiles * 5 * 6 and carries.in_tiles > carries.held
    assert 0 < max(kept) <= carries.tiled * kept_room
    estimate = memory.plan_decode(ours, z.shape, Settings(tile=96, overlap=64, frames_per_step=1)).estimate
    assert estimate.carries == carries.in_tiles * 5 * 6 + carries.tiled * kept_room
    # a tile's last up block holds more finest-size tensors than the whole frame's plan counts
    finest = ours.finest_width * (8 + 1) * 4
    whole = ours.memory_profile.whole_frame_share * finest * 160 * 192
    assert ours.memory_profile.live_in_tiles > LIVE_AT_FINEST and ours.memory_profile.whole_frame_share > 0
    assert estimate.activations == int(ours.memory_profile.live_in_tiles * finest * 96 * 96 + whole)
    assert tiled.shape == (8 * 30 - 7, 160, 192, 3)


def test_the_delay_comes_from_the_layers():
    """Each conv that looks ahead adds one frame at its frame rate: 2.0's release reaches 11 latent frames at
    latent resolution (conv_in, five resnets) and 10.625 in the upsampling stages; streamed, its output lags
    its input by their sum."""
    with torch.device("meta"):
        release = LTX2VideoVAE(LTX2Config())
    assert release.decoder_reach() == (11.0, 10.625) and release.streaming.delay == 21.625
    ours = build_vae(diffusers_ltx2(SMALL_20).state_dict())
    assert ours.decoder_reach() == (1 + 2 * 2, 1 + 1 + 0.5 + 0.5 + 0.25 + 0.25 + 0.125)
    rates = [conv.frames_per_latent for conv in (ours.decoder.conv_in.conv, ours.decoder.up_blocks[0].upsamplers[0]
                                                 .conv.conv, ours.decoder.up_blocks[0].resnets[0].conv1.conv,
                                                 ours.decoder.conv_out.conv)]
    assert rates == [1, 1, 2, 8]


@pytest.mark.parametrize("name", ["2.0", "2.3+t"])
def test_the_causal_decoder_streams_exactly(name):
    """The same weights decoded causally (Lightricks' ``causal_decoder``, diffusers' ``causal=True``) stream one
    stream for the whole clip, any number of latent frames a step."""
    ref = diffusers_ltx2(CONFIGS[name])
    ours = build_vae(ref.state_dict(), metadata=causal_metadata()).configure(decode_timestep=TIMESTEP)
    assert ours.streaming.causal and not ours.streaming.delayed
    z = torch.randn(1, 128, 5, 2, 2, generator=torch.Generator().manual_seed(4))
    expected = reference_frames(ref, z, TIMESTEP if name == "2.3+t" else None, causal=True)
    for per_step in (1, 3):
        assert len(memory.plan_decode(ours, z.shape, Settings(frames_per_step=per_step)).steps) == -(-5 // per_step)
        got = engine.decode(ours, z, frames_per_step=per_step)
        assert (got - expected).abs().max().item() <= TOL
    assert (expected - reference_frames(ref, z, TIMESTEP if name == "2.3+t" else None)).abs().max() > 1e-2


def test_streamed_encode_matches_diffusers(pair):
    ref, ours, _ = pair
    frames = torch.rand(17, 64, 96, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()
    for per_step in (1, 2):
        got = engine.encode(ours, frames, latents_per_step=per_step)
        assert got.shape == expected.shape == (1, 128, 3, 2, 3)
        assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


@pytest.fixture(scope="module")
def smooth():
    """Small weights: a trained decoder responds smoothly, a chaotic random one spreads tile edges far."""
    ref = diffusers_ltx2(SMALL_NOISE, scale=0.02)
    return ref, build_vae(ref.state_dict())


def test_tiles_at_the_default_overlap_match_the_whole_frame(smooth):
    """2x2 tiles of 192 px over 256 px at the default overlap, with the noise fields shared by the tiles."""
    _, ours = smooth
    z = torch.randn(1, 128, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    whole = engine.decode(ours, z)
    tiled = engine.decode(ours, z, tile=192)
    assert "2x2 tiles" in memory.plan_decode(ours, z.shape, Settings(tile=192)).describe(32)
    assert psnr(tiled, whole) >= 45
    assert torch.equal(engine.decode(ours, z, tile=256), whole)


def test_tiles_at_the_release_depth_cross_fade_where_they_agree():
    """2.0's decoder depth (five resnets a level), random weights: tiles start at the last upsampler, whose reach
    is a few of its own pixels, so 2x2 tiles at the default 64 px overlap are within 45 dB of the whole frame
    (from the first upsampler on, the reach of random weights is about 10 latent pixels: far below)."""
    config = dict(LTX2_COMMON, block_out_channels=(8, 16, 32, 32), decoder_block_out_channels=(16, 32, 64),
                  layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(5, 5, 5, 5))
    ours = build_vae(diffusers_ltx2(config, scale=0.02).state_dict())
    assert ours.tile_from == 2 and ours.memory_profile.whole_frame_share == 32 * 4**2 * 4 / (1 * 32**2 * 8)
    z = torch.randn(1, 128, 2, 12, 12, generator=torch.Generator().manual_seed(5))
    whole = engine.decode(ours, z, frames_per_step=2)
    assert psnr(engine.decode(ours, z, frames_per_step=2, tile=224), whole) >= 45
    ours.tile_from = ours.first_upsampling
    assert psnr(engine.decode(ours, z, frames_per_step=2, tile=224), whole) < 45


def test_host_latents_are_normalised_and_the_host_module_is_copied(smooth):
    """The host's LATENTs are (mean - latents_mean) / latents_std; padding and causality come from its module."""
    ref, ours = smooth
    gen = torch.Generator().manual_seed(9)
    frames = torch.rand(9, 64, 64, 3, generator=gen)
    raw = engine.encode(ours, frames)
    host = build_vae(ref.state_dict())
    decoder = torch.nn.Module()
    decoder.conv_in, decoder.causal = torch.nn.Module(), True
    decoder.conv_in.conv = torch.nn.Conv3d(1, 1, 3, padding_mode="zeros")
    host_module = torch.nn.Module()
    host_module.decoder = decoder
    host.use_host_conventions(host_module)
    assert host.normalized_latents and host.spatial_padding == ("zeros", "zeros") and host.streaming.causal
    host.decode_causally(False).pad_spatially("zeros", "reflect")
    normalised = engine.encode(host, frames)
    mean, std = ref.latents_mean.view(1, -1, 1, 1, 1), ref.latents_std.view(1, -1, 1, 1, 1)
    assert torch.allclose(normalised, (raw - mean) / std, atol=1e-5)
    assert torch.allclose(engine.decode(host, normalised), engine.decode(ours, raw), atol=1e-5)


def host_layout(sd):
    """Lightricks' / the host's layout with the statistics the host's module also holds, under the whole-model
    checkpoint's prefix."""
    original = diffusers_to_original(sd)
    for unused in ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means"):
        original[f"per_channel_statistics.{unused}"] = torch.zeros(128)
    return {f"vae.{k}": v for k, v in original.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_both_layouts_load_to_the_same_model(name):
    ref = diffusers_ltx2(CONFIGS[name], seed=3)
    sd = ref.state_dict()
    host = host_layout(sd)
    assert "vae.decoder.up_blocks.0.res_blocks.0.conv1.conv.weight" in host
    assert "vae.per_channel_statistics.mean-of-means" in host
    assert "vae.encoder.down_blocks.8.res_blocks.0.conv1.conv.weight" in host  # the mid block, last
    if name == "2.3+t":
        assert "vae.decoder.up_blocks.8.res_blocks.0.conv1.conv.weight" in host
        assert "vae.decoder.last_scale_shift_table" in host
        assert "vae.decoder.up_blocks.0.time_embedder.timestep_embedder.linear_1.weight" in host
    back = original_to_diffusers(diffusers_to_original(sd))
    assert set(back) == set(sd) and all(back[k] is sd[k] for k in sd)
    a = build_vae(sd).configure(decode_timestep=TIMESTEP, noise_seed=SEED)
    b = build_vae(host).configure(decode_timestep=TIMESTEP, noise_seed=SEED)
    assert a.cfg == b.cfg and a.spatial_padding == b.spatial_padding
    z = torch.randn(1, 128, 3, 2, 2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(engine.decode(a, z), engine.decode(b, z))


def test_the_renaming_is_diffusers_own_single_file_conversion():
    from diffusers.loaders.single_file_utils import convert_ltx2_vae_to_diffusers

    sd = diffusers_ltx2(SMALL_20).state_dict()
    host = host_layout(sd)
    converted = convert_ltx2_vae_to_diffusers(dict(host))
    ours = original_to_diffusers({k[len("vae."):]: v for k, v in host.items()})
    assert set(converted) == set(ours) == set(sd)
    assert all(converted[k] is ours[k] for k in ours)


def ltx_09_checkpoints():
    from diffusers import AutoencoderKLLTXVideo

    with torch.device("meta"):
        for version, config in (("0.9.0", LTX_SMALL), ("0.9.1", SMALL_091), ("0.9.5", SMALL_095)):
            sd = AutoencoderKLLTXVideo(**config).state_dict()
            yield version, sd
            yield version + " original", ltx_to_original(sd, version)


def other_families():
    """Tiny models of every other family, their state dicts on the meta device (recognition reads keys and
    shapes only)."""
    import diffusers as d
    from oracle import WAN21_SMALL, WAN22_SMALL

    models = {
        "Wan 2.1": lambda: d.AutoencoderKLWan(**WAN21_SMALL), "Wan 2.2": lambda: d.AutoencoderKLWan(**WAN22_SMALL),
        "HunyuanVideo": lambda: d.AutoencoderKLHunyuanVideo(block_out_channels=(32, 32, 64, 64), layers_per_block=1),
        "HunyuanVideo 1.5": lambda: d.AutoencoderKLHunyuanVideo15(block_out_channels=(8, 8, 16, 16, 16),
                                                                  layers_per_block=1),
        "CogVideoX": lambda: d.AutoencoderKLCogVideoX(block_out_channels=(32, 32, 64, 64), layers_per_block=1),
        "Mochi": lambda: d.AutoencoderKLMochi(),
        "SD": lambda: d.AutoencoderKL(block_out_channels=(32, 64), norm_num_groups=32,
                                      down_block_types=("DownEncoderBlock2D",) * 2,
                                      up_block_types=("UpDecoderBlock2D",) * 2),
        "SVD": lambda: d.AutoencoderKLTemporalDecoder(block_out_channels=(32, 64),
                                                      down_block_types=("DownEncoderBlock2D",) * 2),
        "TAESD": lambda: d.AutoencoderTiny(),
    }
    with torch.device("meta"):
        for name, make in models.items():
            yield name, make().state_dict()


def test_recognition_accepts_ltx2_in_both_layouts_and_nothing_else():
    for name, config in CONFIGS.items():
        sd = diffusers_ltx2(config).state_dict()
        for either in (sd, diffusers_to_original(sd)):
            assert family_of(either) is ltx2.FAMILY, name
    for version, sd in ltx_09_checkpoints():  # same layouts; the 0.9 releases are LTX-Video's
        assert not ltx2.FAMILY.recognises(sd) and family_of(sd) is ltx.FAMILY, version
    for name, sd in other_families():
        assert not ltx2.FAMILY.recognises(sd), name


def test_bad_inputs_get_one_clear_error_each():
    conditioned = build_vae(diffusers_ltx2(SMALL_23T).state_dict())
    z = torch.randn(1, 128, 2, 2, 2)
    with pytest.raises(FrameStreamError, match="conditioned on a timestep; set decode_timestep"):
        engine.decode(conditioned, z)
    engine.decode(conditioned.configure(decode_timestep=TIMESTEP), z)  # then it decodes
    with pytest.raises(FrameStreamError, match="latent has 16 channels but the LTX-2 VAE expects 128"):
        engine.decode(conditioned, torch.randn(1, 16, 2, 8, 8))  # a Wan 2.1 latent
    with pytest.raises(FrameStreamError, match="latent has 48 channels but the LTX-2 VAE expects 128"):
        engine.decode(conditioned, torch.randn(1, 48, 2, 4, 4))  # a Wan 2.2 latent
    with pytest.raises(FrameStreamError, match=r"read as images \[B, C, H, W\] it has no time axis"):
        engine.decode(conditioned, torch.randn(1, 128, 4, 4))


def test_a_structure_no_release_has_is_refused():
    sd = diffusers_ltx2(SMALL_20).state_dict()
    cases = {
        "scales 4x in time and 16x in space": {k: v for k, v in sd.items()
                                               if not k.startswith("decoder.up_blocks.2.upsamplers.")},
        "upsampler 1 maps 16 to 48 channels": {**sd, "decoder.up_blocks.1.upsamplers.0.conv.conv.weight":
                                               torch.zeros(48, 16, 3, 3, 3)},
    }
    for message, bad in cases.items():
        assert ltx2.FAMILY.recognises(bad)
        with pytest.raises(FrameStreamError, match=f"matches no known LTX-2 release: .*{message}"):
            build_vae(bad)
    host = diffusers_to_original(sd)
    host["decoder.up_blocks.3.res_blocks.0.conv1.conv.weight"] = host.pop("decoder.up_blocks.3.conv.conv.weight")
    with pytest.raises(FrameStreamError, match="matches no known LTX-2 release: decoder.up_blocks.3 is a resnet"):
        build_vae(host)
    with pytest.raises(FrameStreamError, match="incomplete: missing 'encoder.conv_in.conv.weight'"):
        build_vae({k: v for k, v in sd.items() if k != "encoder.conv_in.conv.weight"})


def test_full_width_decoder_at_tiny_resolution():
    """2.0's decoder at its real widths (1024 -> 128; one resnet a level, a reduced encoder), 2x2 latent pixels,
    2 latent frames (the release's depth and halos: test_the_halos_come_from_the_layers)."""
    config = dict(SMALL_20, decoder_block_out_channels=(256, 512, 1024), decoder_layers_per_block=(1, 1, 1, 1))
    ref = diffusers_ltx2(config, scale=0.02)
    ours = build_vae(ref.state_dict())
    assert (ours.cfg.decoder_in_width, ours.cfg.decoder_widths, ours.finest_width) == (1024, (512, 256, 128), 8)
    z = torch.randn(1, 128, 2, 2, 2, generator=torch.Generator().manual_seed(6))
    assert (engine.decode(ours, z) - reference_frames(ref, z, None)).abs().max().item() <= TOL


FILE = CallbackSink(lambda *chunk: None)  # what a video file keeps of the frames: none (its encoder aside)


def test_4k_plan_for_the_release_decoder():
    """121 frames (16 latent frames) of 3840x2176 (2160 rounded up to whole latent pixels) for a GPU with a 24 GB
    budget: the plan reads shapes only, so the release's decoder is built on the meta device."""
    budget, gpu = 24 * 2**30, torch.device("cuda")
    with torch.device("meta"):
        release = LTX2VideoVAE(LTX2Config())
        causal = LTX2VideoVAE(LTX2Config(decoder_causal=True))
    # written to a file as it is decoded (a sink that keeps no frames)
    exact = memory.plan_decode(release, (1, 128, 16, 68, 120), Settings(tile="auto", budget=budget), gpu, FILE)
    # streamed with a delay: a latent frame a step, then the flush; in fp32 the carries fit beside the tiles
    assert exact.tiles.tile_px is not None and exact.per_step == 1 and not exact.tiles.offload_carries
    assert exact.estimate.total <= memory.PLANNED_SHARE * budget
    line = exact.describe(release.spatial_ratio)
    assert "16 steps of up to 1 latent frames and about 22 to flush" in line
    # the whole frame's carries (a tiled stage's that change shape in a step twice) and the old values the
    # step's later tiles still read; in host RAM the backup of what a step overwrites
    carries, cells = probe.delayed_carries_per_cell(release, 16), 68 * 120
    assert carries.held < carries.in_tiles < 2 * carries.held and carries.tiled < carries.held

    def in_tiles(plan):
        windows = layout(68, 120, plan.tiles.tile_px // 32, Settings().overlap // 32).windows
        return carries.in_tiles * cells + carries.tiled * peak_kept_cells(windows)

    # host RAM: the carries' backup, and on a GPU two steps' frames on their way out (outbound.py)
    arriving = 2 * exact.estimate.output
    assert exact.estimate.carries == in_tiles(exact) and exact.estimate.host == carries.held * cells + arriving
    # with half the room the carries wait in host RAM beside the backup, and the line says how much
    tighter = memory.plan_decode(release, (1, 128, 16, 68, 120), Settings(tile="auto", budget=budget // 2), gpu,
                                 FILE)
    assert tighter.tiles.offload_carries and tighter.estimate.total <= memory.PLANNED_SHARE * budget // 2
    host = in_tiles(tighter) + carries.held * cells
    assert tighter.estimate.host == host + arriving
    assert f"carries in host RAM ({host / 2**30:.1f} GiB)" in tighter.describe(release.spatial_ratio)
    # a step's frames in fp32 (8 per latent frame, one more while the end flushes), held once
    assert exact.estimate.output == 3 * 9 * 2176 * 3840 * 4
    on_the_cpu = memory.plan_decode(release, (1, 128, 16, 68, 120), Settings(tile="auto", budget=budget), sink=FILE)
    assert on_the_cpu.estimate.output == exact.estimate.output  # in RAM too: the engine frees a step's frames
    cpu = memory.plan_decode(release, (1, 128, 16, 68, 120), Settings(tile="auto", budget=budget), torch.device("cpu"),
                             FILE)
    assert cpu.estimate.arriving == 0 and exact.estimate.arriving  # on the CPU the frames are home already
    streamed = memory.plan_decode(causal, (1, 128, 16, 68, 120), Settings(tile="auto", budget=budget), gpu, FILE)
    assert streamed.tiles.tile_px is not None and len(streamed.steps) == 16
    assert streamed.estimate.total <= memory.PLANNED_SHARE * budget
    assert "16 steps of up to 1 latent frames" in streamed.describe(release.spatial_ratio)
