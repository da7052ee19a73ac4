"""Node adapters, tested with stand-ins for the host's objects (the real host is in test_host_comfyui.py)."""

import json
import os
import types

import av
import pytest
import torch

from helpers import NODES, NestedLatent, interface, tone
from safetensors.torch import load_file

from framestream.nodes import host
from framestream.nodes.host import io
from framestream.nodes.vae_input import video_vae
from framestream.vae_core.streaming import engine
from framestream.vae_core import build_wan
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.io.audio import Sound, read_sound
from framestream.vae_core.io.files import read_latent
from framestream.vae_core.io.video import VideoFileSink
from framestream.vae_core.io.video_reader import EIGHT_BIT, probe_video, read_video


class HostVAE:
    """What Load VAE hands a node: ``first_stage_model`` holds the weights in the original layout."""

    def __init__(self, module, vae_dtype=torch.float32):
        self.first_stage_model = module
        self.patcher = object()
        self.device = torch.device("cpu")
        self.vae_dtype = vae_dtype


@pytest.fixture
def host_vae(wan21_pair):
    return HostVAE(build_wan(wan21_pair[0].state_dict()))


@pytest.fixture
def fake_host(monkeypatch, tmp_path):
    """Records what the nodes ask of the host's memory manager and progress bar."""
    log = types.SimpleNamespace(loads=[], updates=[], previews=[], interrupt_at=None, checks=0, free=64 * 2**30)

    def throw_if_interrupted():
        log.checks += 1
        if log.interrupt_at is not None and log.checks > log.interrupt_at:
            raise KeyboardInterrupt("interrupted by the user")

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            log.updates.append((value, total))
            log.previews.append(preview)

    mm = types.SimpleNamespace(
        load_models_gpu=lambda models, memory_required=0, force_full_load=False: log.loads.append(
            (models, memory_required, force_full_load)),
        throw_exception_if_processing_interrupted=throw_if_interrupted,
        free_memory=lambda *a: None,
        get_free_memory=lambda device=None: log.free,
    )
    monkeypatch.setattr(host, "AVAILABLE", True)
    monkeypatch.setattr(host, "model_management", mm)
    monkeypatch.setattr(host, "comfy_utils", types.SimpleNamespace(ProgressBar=ProgressBar))
    monkeypatch.setattr(host, "folder_paths", types.SimpleNamespace(
        get_output_directory=lambda: str(tmp_path / "output"), get_input_directory=lambda: str(tmp_path / "input")))
    return log


def test_registered_nodes_have_tooltips_and_names():
    assert {"FrameStreamDecode", "FrameStreamEncode"} <= set(NODES)
    for name, cls in NODES.items():
        schema = cls.define_schema()
        assert issubclass(cls, io.ComfyNode) and cls.__name__ == name
        assert schema.display_name and schema.category.split("/")[0] == "FrameStream" and schema.description
        for spec in schema.inputs:
            assert spec.tooltip, f"{name}.{spec.id} has no tooltip"
        assert all(output.tooltip for output in schema.outputs), name


# inputs whose default or limits changed on purpose since the V1 record, and why: every value a saved workflow
# holds still means what it meant
CHANGED_SINCE_V1 = {
    # 0, the new default and minimum, sizes the steps from the frame (vae_core/streaming/step_size.py); the
    # frames are the same for every value
    "frames_per_step": {"default": 0, "min": 0},
}


def test_v3_nodes_keep_the_v1_interface_saved_workflows_use():
    """Every node id, input name and order, type, default and limit, and output of the V1 nodes (recorded in
    tests/data/node_interface_v1.json before the move to V3) is still there (but the changes listed in
    ``CHANGED_SINCE_V1``); new inputs are optional and come after the old ones (widget values are stored by
    position), new choices and outputs after the old ones."""
    with open(os.path.join(os.path.dirname(__file__), "data", "node_interface_v1.json")) as f:
        recorded = json.load(f)
    assert set(recorded) <= set(NODES)
    for name, before in recorded.items():
        now = interface(NODES[name])
        assert {k: now[k] for k in ("display_name", "category", "output_node")} == \
            {k: before[k] for k in ("display_name", "category", "output_node")}, name
        kept = now["inputs"][: len(before["inputs"])]
        assert [i["name"] for i in kept] == [i["name"] for i in before["inputs"]], name
        for old, new in zip(before["inputs"], kept):
            if "options" in old:  # choices may be added after the old ones
                assert new["options"][: len(old["options"])] == old["options"], (name, old["name"])
            expected = {**old, **CHANGED_SINCE_V1.get(old["name"], {})}
            assert {k: new.get(k) for k in old if k != "options"} == \
                {k: v for k, v in expected.items() if k != "options"}, (name, old["name"])
        assert all(i["optional"] for i in now["inputs"][len(before["inputs"]):]), name
        assert now["outputs"][: len(before["outputs"])] == before["outputs"], name
        assert now["output_names"][: len(before["outputs"])] == before["output_names"], name


def test_node_shares_the_hosts_parameters(host_vae):
    model = video_vae(host_vae)
    ours, theirs = dict(model.named_parameters()), dict(host_vae.first_stage_model.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(ours[k] is theirs[k] for k in ours)  # the same Parameter objects: nothing copied


def test_decode_node_equals_engine_and_uses_host_services(host_vae, fake_host, wan21_pair):
    z = torch.randn(1, 16, 5, 2, 3, generator=torch.Generator().manual_seed(0))
    (frames,) = NODES["FrameStreamDecode"].execute(host_vae, {"samples": z}, frames_per_step=2)
    assert torch.equal(frames, engine.decode(wan21_pair[1], z, frames_per_step=2))
    [(models, memory_required, full)] = fake_host.loads
    assert models == [host_vae.patcher] and memory_required > 0 and full
    assert fake_host.updates[-1] == (3, 3)


def test_encode_node_returns_a_raw_latent(host_vae, fake_host, wan21_pair):
    frames = torch.rand(9, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    (latent,) = NODES["FrameStreamEncode"].execute(host_vae, frames)
    assert set(latent) == {"samples"}
    assert torch.equal(latent["samples"], engine.encode(wan21_pair[1], frames))
    assert fake_host.updates[-1] == (2, 2)  # the first frame, then the other 8 (two latent frames) in one step


def test_interrupt_stops_the_decode(host_vae, fake_host):
    fake_host.interrupt_at = 2
    with pytest.raises(KeyboardInterrupt):
        NODES["FrameStreamDecode"].execute(host_vae, {"samples": torch.randn(1, 16, 6, 2, 2)},
                                                          frames_per_step=1)
    assert fake_host.updates == [(0, 6), (1, 6)]


def test_image_vae_in_a_node_decodes_and_encodes_frame_batches(fake_host):
    """An image VAE's LATENT is a batch of per-frame latents [N, C, h, w]; a video latent or a VAE the host's
    32 GroupNorm groups cannot divide is refused by name."""
    from diffusers import AutoencoderKL

    from framestream.vae_core import build_vae

    module = AutoencoderKL(block_out_channels=(32, 32, 64, 64), layers_per_block=1, latent_channels=4,
                           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    sd_vae, ours = HostVAE(module.eval()), build_vae(module.state_dict())
    z = torch.randn(3, 4, 4, 6, generator=torch.Generator().manual_seed(2))
    (frames,) = NODES["FrameStreamDecode"].execute(sd_vae, {"samples": z})
    assert frames.shape == (3, 32, 48, 3) and torch.equal(frames, engine.decode(ours, z))
    (latent,) = NODES["FrameStreamEncode"].execute(sd_vae, frames)
    assert torch.equal(latent["samples"], engine.encode(ours, frames))
    with pytest.raises(FrameStreamError, match=r"a video latent \[B, C, T, H, W\]; the image VAE .* decodes a batch "
                                               r"of image latents \[N, 4, H, W\]"):
        NODES["FrameStreamDecode"].execute(sd_vae, {"samples": torch.randn(1, 4, 3, 4, 6)})
    narrow = HostVAE(AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4))
    with pytest.raises(FrameStreamError, match=r"the VAE given to this node is an image VAE with block widths \(8,\)"):
        NODES["FrameStreamDecode"].execute(narrow, {"samples": torch.randn(1, 4, 8, 8)})


def test_something_else_on_the_vae_socket():
    with pytest.raises(FrameStreamError, match="connect a VAE from Load VAE"):
        video_vae("not a vae")


def test_wrong_latent_for_the_vae_in_a_node(host_vae):
    with pytest.raises(FrameStreamError, match="expects 16"):
        NODES["FrameStreamDecode"].execute(host_vae, {"samples": torch.randn(1, 48, 2, 2, 2)})


def test_standalone_fallbacks_do_nothing_host_specific(monkeypatch, host_vae):
    def host_called(*args, **kwargs):
        raise AssertionError("the host was called while standalone")

    monkeypatch.setattr(host, "AVAILABLE", False)
    monkeypatch.setattr(host, "model_management", types.SimpleNamespace(
        load_models_gpu=host_called, throw_exception_if_processing_interrupted=host_called, free_memory=host_called))
    host.load_for_inference(host_vae, 123)
    host.free_memory(123, "cpu")
    host.Progress("decode")(1, 2)


def test_parameters_the_host_replaces_while_loading_are_used(host_vae, fake_host, wan21_pair):
    """The host may swap parameter objects when it loads (weight patches, dynamic loading): build after loading."""
    module = host_vae.first_stage_model

    def load_models_gpu(models, memory_required=0, force_full_load=False):
        module.decoder.head[2].bias = torch.nn.Parameter(module.decoder.head[2].bias.detach() + 0.25)

    host.model_management.load_models_gpu = load_models_gpu
    z = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    (frames,) = NODES["FrameStreamDecode"].execute(host_vae, {"samples": z})
    assert torch.equal(frames, engine.decode(build_wan(module.state_dict()), z))
    assert not torch.equal(frames, engine.decode(wan21_pair[1], z))


def test_weights_left_elsewhere_by_the_host_get_a_private_copy(wan21_pair, fake_host):
    """With weights not on the host's VAE device/precision (--novram, offloading), decode still runs there."""
    module = build_wan(wan21_pair[0].state_dict())
    host_vae = HostVAE(module, vae_dtype=torch.float64)
    before = dict(module.named_parameters())
    z = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    (frames,) = NODES["FrameStreamDecode"].execute(host_vae, {"samples": z})
    float64 = build_wan({k: v.double() for k, v in wan21_pair[0].state_dict().items()})
    assert torch.equal(frames, engine.decode(float64, z))
    assert all(p is before[k] and p.dtype == torch.float32 for k, p in module.named_parameters())


def test_a_four_dimensional_latent_on_the_socket_is_an_image_latent(host_vae):
    """[16, 16, H, W] could pass for [C, T, H, W]; on a node it is a batch of 16 image latents."""
    with pytest.raises(FrameStreamError, match=r"image latent \[B, C, H, W\]"):
        NODES["FrameStreamDecode"].execute(host_vae, {"samples": torch.randn(16, 16, 4, 4)})


def test_decode_node_previews_the_newest_frame(host_vae, fake_host):
    NODES["FrameStreamDecode"].execute(host_vae, {"samples": torch.randn(1, 16, 3, 2, 3)})
    assert fake_host.previews[0] is None
    kind, image, size = fake_host.previews[-1]
    assert kind == "JPEG" and image.size == (24, 16) and size == host.PREVIEW_SIZE


def test_nodes_report_progress_with_eta_on_the_console(host_vae, fake_host, capsys):
    NODES["FrameStreamDecode"].execute(host_vae, {"samples": torch.randn(1, 16, 3, 2, 3)}, frames_per_step=1)
    NODES["FrameStreamEncode"].execute(host_vae, torch.rand(5, 16, 24, 3))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "FrameStream decode   0%|          | 0/3 steps [00:00<?]"
    assert lines[1].startswith("FrameStream decode 100%|##########| 3/3 steps [00:0")  # not a terminal: no
    assert lines[2] == "FrameStream encode   0%|          | 0/2 steps [00:00<?]"  # redraws within 5 s
    assert lines[3].startswith("FrameStream encode 100%|##########| 2/2 steps [00:0")
    assert lines[3].endswith(" s/step]") and len(lines) == 4


def test_decode_node_tiles_under_a_budget_and_with_custom_tiles(host_vae, fake_host, wan21_pair):
    z = torch.randn(1, 16, 2, 20, 20, generator=torch.Generator().manual_seed(5))
    node = NODES["FrameStreamDecode"]
    (custom,) = node.execute(host_vae, {"samples": z}, tiles="custom", tile_size=64, tile_overlap=16)
    assert torch.equal(custom, engine.decode(wan21_pair[1], z, tile=64, overlap=16))
    fake_host.free = 1  # nothing free: auto picks the smallest tiles
    (auto,) = node.execute(host_vae, {"samples": z}, tiles="auto", tile_overlap=8)
    assert not torch.equal(auto, engine.decode(wan21_pair[1], z))
    (none,) = node.execute(host_vae, {"samples": z}, tiles="none")
    # nothing free: one latent frame a step, where the engine's own plan (RAM free) takes both in one step
    assert (none - engine.decode(wan21_pair[1], z)).abs().max() <= 1e-5


def test_decode_to_video_node_writes_a_numbered_mp4_in_the_output_folder(host_vae, fake_host, tmp_path):
    from framestream.vae_core.io.video_reader import probe_video

    node = NODES["FrameStreamDecodeToVideo"]
    z = torch.randn(1, 16, 3, 2, 3)
    for number in (1, 2):
        out = node.execute(host_vae, {"samples": z}, 24.0, "clips/run", "h264", 19)
        video, path = out.result
        assert path == str(tmp_path / "output" / "clips" / f"run_{number:05d}.mp4")
        info = probe_video(path)
        assert (info.frames, info.fps, info.width, info.height) == (9, 24.0, 24, 16)
        assert out.ui["images"] == [{"filename": f"run_{number:05d}.mp4", "subfolder": "clips", "type": "output"}]


@pytest.mark.parametrize("prefix", ["../escape", "clips/../../escape", "/tmp/absolute", ""])
def test_decode_to_video_node_refuses_prefixes_outside_the_output_folder(host_vae, fake_host, tmp_path, prefix):
    with pytest.raises(FrameStreamError, match="filename_prefix"):
        NODES["FrameStreamDecodeToVideo"].execute(host_vae, {"samples": torch.randn(1, 16, 2, 2, 2)},
                                              16.0, prefix, "h264", 19)
    assert not any((tmp_path / "output").rglob("*.mp4")) and not (tmp_path.parent / "escape_00001.mp4").exists()


def test_interrupted_decode_to_video_leaves_no_file(host_vae, fake_host, tmp_path):
    fake_host.interrupt_at = 2
    with pytest.raises(KeyboardInterrupt):
        NODES["FrameStreamDecodeToVideo"].execute(host_vae, {"samples": torch.randn(1, 16, 6, 2, 2)},
                                              16.0, "FrameStream/video", "h264", 19, frames_per_step=1)
    assert [p for p in (tmp_path / "output").rglob("*") if p.is_file()] == []


@pytest.mark.filterwarnings("ignore:encoding .* the rest is left out")  # the file has frames beyond 1 + 4k
def test_encode_video_file_node_equals_encoding_the_frames(host_vae, fake_host, tmp_path, wan21_pair):
    from framestream.vae_core.demo import moving_shapes
    from framestream.vae_core.io.video import VideoFileSink
    from framestream.vae_core.io.video_reader import read_video

    (tmp_path / "input").mkdir()
    clip = moving_shapes(11, 32, 40)
    sink = VideoFileSink(tmp_path / "input" / "clip.mkv", 16, lossless=True)
    sink.start((1, *clip.shape))
    sink.write(0, 0, clip)
    sink.result()
    node = NODES["FrameStreamEncodeVideoFile"]
    assert "clip.mkv" in next(i for i in node.define_schema().inputs if i.id == "file").options
    (latent, sound) = node.execute(host_vae, "clip.mkv", start_frame=1, frame_count=5, stride=2, width=0, height=0)
    frames = torch.cat(list(read_video(tmp_path / "input" / "clip.mkv")))[1:11:2]
    assert torch.equal(latent["samples"], engine.encode(wan21_pair[1], frames))
    assert sound["waveform"].shape == (1, 1, 0)  # the file has no sound: an empty one
    (resized, _) = node.execute(host_vae, "clip.mkv", start_frame=0, frame_count=0, stride=1, width=48, height=16)
    assert resized["samples"].shape == (1, 16, 3, 2, 6)
    with pytest.raises(FrameStreamError, match="both width and height"):
        node.execute(host_vae, "clip.mkv", start_frame=0, frame_count=0, stride=1, width=48, height=0)


def test_both_decode_nodes_take_an_audio_video_latents_video_part(host_vae, fake_host, wan21_pair, tmp_path):
    """A nested LATENT (LTX-2 AV, MiniMax H3 ...: video first, as the host's VAE Decode reads it) decodes its
    video part; a plain LATENT as before."""
    z = torch.randn(1, 16, 3, 2, 3, generator=torch.Generator().manual_seed(3))
    nested = {"samples": NestedLatent(z, torch.randn(1, 8, 5, 16))}
    (frames,) = NODES["FrameStreamDecode"].execute(host_vae, nested)
    assert torch.equal(frames, engine.decode(wan21_pair[1], z))
    video, path = NODES["FrameStreamDecodeToVideo"].execute(host_vae, nested, 16.0, "av/clip", "h264 lossless (RGB)",
                                                             19)
    assert torch.equal(torch.cat(list(read_video(path, reading=EIGHT_BIT))), (frames * 255 + 0.5).floor() / 255)


def test_a_nested_latent_of_another_family_is_refused_naming_its_video_part(host_vae, fake_host, tmp_path):
    h3 = {"samples": NestedLatent(torch.randn(1, 24, 2, 2, 2), torch.randn(1, 32, 2, 40))}  # MiniMax H3's shapes
    for node, extra in (("FrameStreamDecode", ()), ("FrameStreamDecodeToVideo", (16.0, "av/h3", "h264", 19))):
        with pytest.raises(FrameStreamError, match="this audio[+]video LATENT's video part does not fit: latent has "
                                                   "24 channels but the Wan 2.1 VAE expects 16"):
            NODES[node].execute(host_vae, h3, *extra)
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").rglob("*.*"))


def test_decode_to_video_writes_the_audio_input_into_the_file(host_vae, fake_host, tmp_path):
    z = torch.randn(1, 16, 3, 2, 3)
    sound = {"waveform": tone(1.0)[None], "sample_rate": 44100}
    for codec, suffix, name in (("h264", ".mp4", "aac"), ("vp9 (webm)", ".webm", "opus")):
        _, path = NODES["FrameStreamDecodeToVideo"].execute(host_vae, {"samples": z}, 16.0, "sound/clip", codec, 19,
                                                            audio=sound)
        assert path.endswith(suffix)
        back = read_sound(path)
        assert abs(back.seconds - 1.0) < 0.03 and probe_video(path).frames == 9
        with av.open(path) as container:
            assert container.streams.audio[0].codec_context.name == name


@pytest.mark.parametrize("audio, message", [
    ({"waveform": torch.zeros(1, 2, 0), "sample_rate": 44100}, "the audio input holds no samples"),
    ({"waveform": torch.zeros(1, 4, 100), "sample_rate": 44100}, "the audio input has 4 channels"),
    (torch.zeros(1, 2, 100), "the audio input is a Tensor, not the host's AUDIO"),
])
def test_bad_audio_inputs_are_refused_before_anything_is_written(host_vae, fake_host, tmp_path, audio, message):
    with pytest.raises(FrameStreamError, match=message):
        NODES["FrameStreamDecodeToVideo"].execute(host_vae, {"samples": torch.randn(1, 16, 3, 2, 3)}, 16.0,
                                                  "sound/clip", "h264", 19, audio=audio)
    assert fake_host.loads == [] and not (tmp_path / "output").exists()


@pytest.mark.parametrize("save_latent, frames, kept", [("auto", 241, True), ("auto", 237, False), ("on", 9, True),
                                                       ("off", 241, False)])
def test_the_latent_is_kept_beside_a_long_video_before_decoding(host_vae, fake_host, tmp_path, save_latent, frames,
                                                                kept):
    """Written before the decode starts, so a decode that fails (here: interrupted) loses no sampling; a file
    Load Latent reads, with an audio+video latent's other parts beside it."""
    z = torch.randn(1, 16, 1 + (frames - 1) // 4, 1, 1, generator=torch.Generator().manual_seed(4))
    audio_part = torch.randn(1, 8, 3, 16)
    fake_host.interrupt_at = 1
    with pytest.raises(KeyboardInterrupt):
        NODES["FrameStreamDecodeToVideo"].execute(host_vae, {"samples": NestedLatent(z, audio_part)}, 16.0,
                                                  "long/run", "h264", 19, save_latent=save_latent)
    files = sorted(p.name for p in (tmp_path / "output" / "long").iterdir())
    assert files == (["run_00001.latent"] if kept else [])  # the video was not finished: no mp4
    if kept:
        saved = load_file(tmp_path / "output" / "long" / "run_00001.latent")
        assert torch.equal(read_latent(str(tmp_path / "output" / "long" / "run_00001.latent")), z)
        assert torch.equal(saved["framestream_part_1"], audio_part)


def test_encode_video_file_returns_the_files_sound_over_the_encoded_frames(host_vae, fake_host, tmp_path):
    (tmp_path / "input").mkdir()
    frames = torch.rand(17, 16, 16, 3)
    sink = VideoFileSink(tmp_path / "input" / "talk.mkv", 16, sound=Sound(tone(2.0), 44100))
    sink.start((1, *frames.shape))
    sink.write(0, 0, frames)
    sink.result()
    whole = read_sound(tmp_path / "input" / "talk.mkv")
    node = NODES["FrameStreamEncodeVideoFile"]
    _, audio = node.execute(host_vae, "talk.mkv", start_frame=0, frame_count=0, stride=1, width=0, height=0)
    assert audio["sample_rate"] == 44100 and torch.equal(audio["waveform"][0], whole.samples)  # to the end: all
    _, audio = node.execute(host_vae, "talk.mkv", start_frame=4, frame_count=5, stride=2, width=0, height=0)
    begin, end = round(4 / 16 * 44100), round(14 / 16 * 44100)  # frames 4, 6, ..., 12 span 4/16 s to 14/16 s
    assert torch.equal(audio["waveform"][0], whole.samples[:, begin:end])


def sample_ar_video():
    """Stands in for the host's autoregressive sampler function (the node knows it by name)."""


class ARModel:
    """The host's model as the live-decode node sees it: a latent format (Wan 2.1's per-channel statistics) and a
    diffusion model with KV caches."""

    class latent_format:
        latent_channels = 16
        mean, std = torch.linspace(-0.3, 0.3, 16).view(1, 16, 1, 1, 1), torch.linspace(0.5, 1.5, 16).view(1, 16, 1, 1, 1)

        @classmethod
        def process_out(cls, latent):
            return latent * cls.std + cls.mean

    diffusion_model = types.SimpleNamespace(init_kv_caches=lambda *a: None)


def ar_sampling(live, blocks: list[int], z: torch.Tensor, stop_after: int | None = None):
    """What Sampler AR Video does to the model, block by block: denoising calls, then the call at sigma 0 on the
    finished block (cond and uncond batched), then the same block once more alone (not pushed twice)."""
    start = 0
    for number, size in enumerate(blocks):
        block = z[:, :, start : start + size]
        state = {"ar_state": {"start_frame": start}}
        live.see(torch.randn_like(block).repeat(2, 1, 1, 1, 1), 0.7, {**state, "cond_or_uncond": [0, 1]})
        live.see(block.repeat(2, 1, 1, 1, 1), 0.0, {**state, "cond_or_uncond": [0, 1]})
        live.see(block + 1, 0.0, {**state, "cond_or_uncond": [1]})
        if stop_after is not None and number == stop_after:
            raise KeyboardInterrupt("cancelled")
        start += size
    return z


def test_live_decode_writes_each_finished_block_and_equals_decoding_afterwards(host_vae, fake_host, tmp_path,
                                                                             wan21_pair):
    from framestream.nodes.live_decode import LiveDecode

    z = torch.randn(1, 16, 7, 2, 3, generator=torch.Generator().manual_seed(6))  # the model's latent space
    guider = types.SimpleNamespace(model_patcher=types.SimpleNamespace(model=ARModel))
    live = LiveDecode(host_vae, 16.0, "live/run", "h264 lossless (RGB)", 19, {})
    sampler = types.SimpleNamespace(sampler_function=sample_ar_video)
    sizes = []

    def sampling():
        out = ar_sampling(live, [1, 3, 3], z)
        sizes.append(probe_video(live.paths[0]).frames if os.path.exists(live.paths[0]) else None)
        return out

    assert live.around(guider, sampler, z, sampling) is z
    assert sizes == [None]  # the file appears when complete (written under a hidden name until then)
    expected = engine.decode(wan21_pair[1], ARModel.latent_format.process_out(z))
    written = torch.cat(list(read_video(live.paths[0], reading=EIGHT_BIT)))
    assert written.shape == expected.shape == (25, 16, 24, 3)
    assert (written - expected).abs().max().item() <= 0.5 / 255 + 1e-4
    assert fake_host.previews[-1] is not None  # the newest frame shown beside the sampler's own previews


def test_cancelled_live_decode_leaves_no_file(host_vae, fake_host, tmp_path):
    from framestream.nodes.live_decode import LiveDecode

    z = torch.randn(1, 16, 5, 2, 2)
    guider = types.SimpleNamespace(model_patcher=types.SimpleNamespace(model=ARModel))
    live = LiveDecode(host_vae, 16.0, "live/run", "h264", 19, {})
    with pytest.raises(KeyboardInterrupt):
        live.around(guider, types.SimpleNamespace(sampler_function=sample_ar_video), z,
                    lambda: ar_sampling(live, [2, 2, 1], z, stop_after=1))
    assert [p for p in (tmp_path / "output").rglob("*") if p.is_file()] == []


def test_live_decode_lets_other_samplers_run_and_refuses_a_vae_for_another_latent(host_vae, fake_host, tmp_path,
                                                                               caplog):
    from framestream.nodes.live_decode import LiveDecode

    z = torch.randn(1, 16, 3, 2, 2)
    live = LiveDecode(host_vae, 16.0, "live/run", "h264", 19, {})
    guider = types.SimpleNamespace(model_patcher=types.SimpleNamespace(model=ARModel))
    euler = types.SimpleNamespace(sampler_function=lambda: None)
    assert live.around(guider, euler, z, lambda: "sampled") == "sampled"
    assert "needs Sampler AR Video and an autoregressive model" in caplog.text
    wan22 = types.SimpleNamespace(model_patcher=types.SimpleNamespace(model=types.SimpleNamespace(
        latent_format=types.SimpleNamespace(latent_channels=48), diffusion_model=ARModel.diffusion_model)))
    ran = []
    with pytest.raises(FrameStreamError, match="the VAE does not fit this autoregressive model's latent: latent has "
                                               "48 channels but the Wan 2.1 VAE expects 16"):
        live.around(wan22, types.SimpleNamespace(sampler_function=sample_ar_video), z.repeat(1, 3, 1, 1, 1),
                    lambda: ran.append(1))
    assert ran == [] and not any((tmp_path / "output").rglob("*.*"))
