"""One plan per run: what the engine runs is what the node asks the host to free, and every setting is checked."""

import dataclasses

import pytest
import torch

from framestream.vae_core import build_vae
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming import engine, estimate, memory
from framestream.vae_core.streaming.settings import Settings

from helpers import step_estimate
from oracle import LTX_SMALL, diffusers_ltx
from toy_models import LookAheadNormVAE


@pytest.fixture(scope="module")
def ltx():
    return build_vae(diffusers_ltx(LTX_SMALL).state_dict())


def test_a_windowed_decoder_is_planned_for_its_whole_window():
    """A decoder that looks ahead beyond its convs decodes windows of a core plus halos: the plan's step is the
    window, not frames_per_step."""
    vae = LookAheadNormVAE(core=2, halo=3)
    work = memory.plan_decode(vae, (1, 4, 40, 4, 4), Settings(frames_per_step=1))
    assert work.per_step == 2 + 2 * 3 and not work.steps[0].streamed
    kept = vae.decoded_frames(40) * 4 * 4 * 3 * 4  # decode()'s frames, kept in memory: float32 RGB
    assert work.estimate == dataclasses.replace(step_estimate(vae, 4, 4, work.per_step), kept=kept)


def test_a_delayed_decoder_is_planned_for_its_step_and_its_flush(ltx):
    """LTX-Video's decoder streams with a delay: its step is frames_per_step (plus the frame its convs look ahead
    to, at the finest rate), followed by steps that flush the clip's end, about its delay over the step."""
    work = memory.plan_decode(ltx, (1, 128, 40, 4, 4), Settings(frames_per_step=2))
    assert work.per_step == 2 and all(w.streamed for w in work.steps)
    flush = [w for w in work.steps if w.start == w.stop == 40]
    assert len(work.steps) == 20 + len(flush) and len(flush) == round(ltx.streaming.delay / 2)
    finest = ltx.finest_width * (8 * 2 + 1) * 128 * 128 * 4  # bytes of one finest-width tensor of the step
    whole = ltx.memory_profile.whole_frame_share * finest  # the whole-frame stages' output, there while the tiles run
    assert ltx.memory_profile.whole_frame_share > 0
    assert work.estimate.activations == step_estimate(ltx, 128, 128, 2).activations \
        == int(max(estimate.LIVE_AT_FINEST * whole, estimate.LIVE_AT_FINEST * finest + whole))


def test_the_node_asks_the_host_for_what_the_plan_holds(ltx, monkeypatch):
    from framestream.nodes import vae_input

    asked = []
    monkeypatch.setattr(vae_input, "ready_video_vae", lambda vae, room, built=None: asked.append(room) or ltx)
    latent = torch.randn(1, 128, 40, 4, 4)
    vae_input.prepare_decode(ltx, {"samples": latent}, 1, {"tiles": "none"})
    vae_input.prepare_decode(ltx, {"samples": latent}, 1, {"tiles": "custom", "tile_size": 64, "tile_overlap": 32})
    untiled = memory.plan_decode(ltx, latent.shape, Settings(frames_per_step=1)).estimate.total
    tiled = memory.plan_decode(ltx, latent.shape, Settings(tile=64, overlap=32, frames_per_step=1)).estimate.total
    assert asked == [untiled, tiled] and tiled < untiled


def test_the_video_node_asks_for_its_encoder_too(ltx, monkeypatch, tmp_path):
    """On the CPU a video file's encoder holds RAM beside the decode, and FrameStream Decode's IMAGE keeps every
    frame: the node asks the host for what its own output holds."""
    from framestream.nodes import vae_input
    from framestream.vae_core.io.video import VideoFileSink

    asked = []
    monkeypatch.setattr(vae_input, "ready_video_vae", lambda vae, room, built=None: asked.append(room) or ltx)
    latent, sink = torch.randn(1, 128, 40, 4, 4), VideoFileSink(str(tmp_path / "clip.mp4"), 24)
    vae_input.prepare_decode(ltx, {"samples": latent}, 1, {"tiles": "none"}, sink)
    vae_input.prepare_decode(ltx, {"samples": latent}, 1, {"tiles": "none"})
    encoder = sink.held_bytes(128, 128, ltx.decoded_frames(40))
    kept = memory.plan_decode(ltx, latent.shape, Settings(frames_per_step=1)).estimate.kept  # the IMAGE's frames
    assert encoder > 0 and kept == ltx.decoded_frames(40) * 128 * 128 * 12 and asked[0] == asked[1] - kept + encoder
    assert asked[0] == memory.plan_decode(ltx, latent.shape, Settings(frames_per_step=1), sink=sink).estimate.total
    assert list(tmp_path.iterdir()) == []  # planning writes nothing


def test_auto_tiles_ask_for_the_untiled_peak_then_plan_against_what_is_free(ltx):
    latent_shape = (1, 128, 40, 16, 16)
    untiled = memory.plan_decode(ltx, latent_shape, Settings(frames_per_step=1))
    # room for a tiled step's carries (a delayed decoder writes a second copy of those that change shape),
    # the step's output, half the untiled activations
    need = 2 * untiled.estimate.carries + untiled.estimate.output + untiled.estimate.activations // 2 \
        + untiled.estimate.kept  # and the frames decode() keeps: no tile makes them fewer
    auto = Settings(tile="auto", budget=int(need / memory.PLANNED_SHARE), frames_per_step=1)

    assert memory.room_to_ask(lambda s: memory.plan_decode(ltx, latent_shape, s), auto) == untiled.estimate.total
    planned = memory.plan_decode(ltx, latent_shape, auto)
    assert planned.tiles.tile_px is not None and planned.estimate.total <= need
    assert f"2x2 tiles of {planned.tiles.tile_px} px" in planned.describe(ltx.spatial_ratio)
    flush = round(ltx.streaming.delay)
    assert f"40 steps of up to 1 latent frames and about {flush} to flush the decoder's look-ahead" \
        in untiled.describe(ltx.spatial_ratio)
    assert untiled.describe(ltx.spatial_ratio).endswith(f"-> {ltx.decoded_frames(40)}x512x512x3")


@pytest.mark.parametrize("options, message", [
    ({"frames_per_step": 0}, "frames_per_step must be at least 1, got 0"),
    ({"latents_per_step": 1.5}, "latents_per_step must be a whole number"),
    ({"tile": "big"}, "tile must be 'auto', 'none' or a size in pixels, got 'big'"),
    ({"tile": -64}, "tile must be"),
    ({"overlap": -1}, "tile overlap must be 0 or more pixels"),
    ({"budget": 0}, "the memory budget must be more than 0 bytes"),
    ({"statistics_passes": -1}, "statistics_passes must be 0 or more"),
])
def test_every_setting_is_checked_before_any_work(options, message):
    with pytest.raises(FrameStreamError, match=message):
        Settings(**options)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unknown option"):
        engine.decode(LookAheadNormVAE(2, 2), torch.randn(1, 4, 3, 1, 1), tiles="auto")


def test_windows_gather_the_clips_statistics_counting_each_frame_once():
    """A GroupNorm over the whole clip inside a decoder decoded in windows: one gathering pass gives the
    whole-clip statistics (halo frames are not counted twice, windows keep adding up), so windows are exact."""
    vae = LookAheadNormVAE(core=2, halo=2).eval()
    z = torch.randn(1, 4, 9, 3, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = vae.decode_chunk(z)[0].add(1).div(2).clamp(0, 1).permute(1, 2, 3, 0)
    windowed = engine.decode(vae, z)
    running = engine.decode(vae, z, statistics_passes=0)
    assert len(memory.plan_decode(vae, z.shape, Settings()).steps) == 5
    assert (windowed - whole).abs().max() < 1e-5
    assert (running - whole).abs().max() > 1e-3


def test_a_model_may_say_how_many_finest_size_tensors_it_holds():
    """HunyuanVideo 1.5's convs copy each input once more to pad it by replication: 9 finest-size tensors."""
    from framestream.vae_core.models.hunyuan15.model import HunyuanVideo15VAE

    with torch.device("meta"):
        vae = HunyuanVideo15VAE()
    assert vae.memory_profile.live_at_finest == 9.0
    activations = step_estimate(vae, 256, 256, 1).activations
    assert activations == int(9.0 * vae.finest_width * vae.temporal_ratio * 256 * 256 * 4)


def test_a_video_file_s_encoder_is_counted_in_a_decode_to_it(wan21_pair, tmp_path):
    """x264's look-ahead holds frames in RAM while a decode writes a file: on the CPU the plan adds what the sink
    says it holds (more for bigger frames, up to a look-ahead's worth of frames), plans tiles around it and says
    so; on a GPU it is host RAM, not part of the device's peak."""
    from framestream.vae_core.io.video import VideoFileSink
    from framestream.vae_core.streaming.sinks import CallbackSink
    from framestream.vae_core.streaming.stitch import StitchSink

    vae = wan21_pair[1]
    latent_shape = (1, 16, 31, 64, 64)  # 121 frames of 512x512
    sink = VideoFileSink(tmp_path / "out.mp4", 24)
    held = sink.held_bytes(512, 512, 121)
    assert sink.held_bytes(256, 256, 121) < held == sink.held_bytes(512, 512, 600)  # full look-ahead by 121
    assert sink.held_bytes(512, 512, 9) < held
    assert VideoFileSink(tmp_path / "out.webm", 24).held_bytes(512, 512, 121) != held
    assert StitchSink(sink, 1).held_bytes(512, 512, 121) == held  # the segments' stitcher passes it on

    alone = memory.plan_decode(vae, latent_shape, Settings(), sink=CallbackSink(print))  # keeps nothing
    to_file = memory.plan_decode(vae, latent_shape, Settings(), sink=sink)
    assert to_file.estimate.total == alone.estimate.total + held and to_file.estimate.writer == held
    assert f"(the video encoder: {held / 2**20:.0f} MiB included)" in to_file.describe(vae.spatial_ratio)
    assert not list(tmp_path.iterdir())  # planning writes nothing

    # a budget the untiled decode fits alone, but not beside the encoder: tiles, all within the budget
    budget = int((alone.estimate.total + held // 2) / memory.PLANNED_SHARE)
    assert memory.plan_decode(vae, latent_shape, Settings(tile="auto", budget=budget),
                              sink=CallbackSink(print)).tiles.tile_px is None
    tiled = memory.plan_decode(vae, latent_shape, Settings(tile="auto", budget=budget), sink=sink)
    assert tiled.tiles.tile_px is not None and tiled.estimate.total <= memory.PLANNED_SHARE * budget

    on_gpu = memory.plan_decode(vae, latent_shape, Settings(), torch.device("cuda"), sink=sink)
    bare_gpu = memory.plan_decode(vae, latent_shape, Settings(), torch.device("cuda"), sink=CallbackSink(print))
    assert on_gpu.estimate.total == bare_gpu.estimate.total and on_gpu.estimate.host == bare_gpu.estimate.host + held
    assert f"and {held / 2**20:.0f} MiB of host RAM for the video encoder" in on_gpu.describe(vae.spatial_ratio)


def test_the_plan_counts_the_frames_a_decode_keeps_in_memory(wan21_pair, tmp_path):
    """decode() without a sink (the node's IMAGE, a .safetensors output) keeps every frame: 481 frames at 1080p
    hold 472 frames' float32 more than 9 do, and the plan grows by exactly that; a decode to a video file keeps
    none, so its plan does not grow. A budget the frames do not fit is refused, advising a video file."""
    from framestream.vae_core.io.video import VideoFileSink

    vae, frame = wan21_pair[1], (1080 // 8, 1920 // 8)
    short, long = (memory.plan_decode(vae, (1, 16, vae.latent_frames(n), *frame), Settings()) for n in (9, 481))
    assert long.estimate.total - short.estimate.total == (481 - 9) * 1080 * 1920 * 3 * 4
    kept = 481 * 1080 * 1920 * 3 * 4
    assert long.estimate.kept == kept and f"(the frames kept: {kept / 2**20:.0f} MiB included)" in \
        long.describe(vae.spatial_ratio)
    to_file = [memory.plan_decode(vae, (1, 16, vae.latent_frames(n), *frame), Settings(),
                                  sink=VideoFileSink(tmp_path / "clip.mp4", 16)).estimate for n in (9, 241, 481)]
    assert all(estimate.kept == 0 for estimate in to_file)
    # only the encoder's look-ahead fills (by 121 frames): then nothing more, however long
    assert to_file[1].total - to_file[0].total == to_file[1].writer - to_file[0].writer < 2**30
    assert to_file[2].total == to_file[1].total
    with pytest.raises(FrameStreamError, match="or write to a video file, which keeps no frames"):
        long.check_budget(Settings(tile="auto", budget=8 * 2**30))
