"""Node adapters, tested with stand-ins for the host's objects (the real host is in test_host_comfyui.py)."""

import types

import pytest
import torch

from framestream import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from framestream.nodes import host
from framestream.nodes.vae_input import video_vae
from framestream.vae_core.streaming import engine
from framestream.vae_core import build_wan
from framestream.vae_core.errors import FrameStreamError


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
    assert {"FrameStreamDecode", "FrameStreamEncode"} <= set(NODE_CLASS_MAPPINGS)
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert name in NODE_DISPLAY_NAME_MAPPINGS and cls.CATEGORY.split("/")[0] == "FrameStream" and cls.DESCRIPTION
        inputs = cls.INPUT_TYPES()
        for group in inputs.values():
            for input_name, (_, options) in group.items():
                assert options.get("tooltip"), f"{name}.{input_name} has no tooltip"
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)


def test_node_shares_the_hosts_parameters(host_vae):
    model = video_vae(host_vae)
    ours, theirs = dict(model.named_parameters()), dict(host_vae.first_stage_model.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(ours[k] is theirs[k] for k in ours)  # the same Parameter objects: nothing copied


def test_decode_node_equals_engine_and_uses_host_services(host_vae, fake_host, wan21_pair):
    z = torch.randn(1, 16, 5, 2, 3, generator=torch.Generator().manual_seed(0))
    (frames,) = NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": z}, frames_per_step=2)
    assert torch.equal(frames, engine.decode(wan21_pair[1], z, frames_per_step=2))
    [(models, memory_required, full)] = fake_host.loads
    assert models == [host_vae.patcher] and memory_required > 0 and full
    assert fake_host.updates[-1] == (3, 3)


def test_encode_node_returns_a_raw_latent(host_vae, fake_host, wan21_pair):
    frames = torch.rand(9, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    (latent,) = NODE_CLASS_MAPPINGS["FrameStreamEncode"]().encode(host_vae, frames)
    assert set(latent) == {"samples"}
    assert torch.equal(latent["samples"], engine.encode(wan21_pair[1], frames))
    assert fake_host.updates[-1] == (3, 3)


def test_interrupt_stops_the_decode(host_vae, fake_host):
    fake_host.interrupt_at = 2
    with pytest.raises(KeyboardInterrupt):
        NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": torch.randn(1, 16, 6, 2, 2)},
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
    (frames,) = NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(sd_vae, {"samples": z})
    assert frames.shape == (3, 32, 48, 3) and torch.equal(frames, engine.decode(ours, z))
    (latent,) = NODE_CLASS_MAPPINGS["FrameStreamEncode"]().encode(sd_vae, frames)
    assert torch.equal(latent["samples"], engine.encode(ours, frames))
    with pytest.raises(FrameStreamError, match=r"a video latent \[B, C, T, H, W\]; the image VAE .* decodes a batch "
                                               r"of image latents \[N, 4, H, W\]"):
        NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(sd_vae, {"samples": torch.randn(1, 4, 3, 4, 6)})
    narrow = HostVAE(AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4))
    with pytest.raises(FrameStreamError, match=r"the VAE given to this node is an image VAE with block widths \(8,\)"):
        NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(narrow, {"samples": torch.randn(1, 4, 8, 8)})


def test_something_else_on_the_vae_socket():
    with pytest.raises(FrameStreamError, match="connect a VAE from Load VAE"):
        video_vae("not a vae")


def test_wrong_latent_for_the_vae_in_a_node(host_vae):
    with pytest.raises(FrameStreamError, match="expects 16"):
        NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": torch.randn(1, 48, 2, 2, 2)})


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
    (frames,) = NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": z})
    assert torch.equal(frames, engine.decode(build_wan(module.state_dict()), z))
    assert not torch.equal(frames, engine.decode(wan21_pair[1], z))


def test_weights_left_elsewhere_by_the_host_get_a_private_copy(wan21_pair, fake_host):
    """With weights not on the host's VAE device/precision (--novram, offloading), decode still runs there."""
    module = build_wan(wan21_pair[0].state_dict())
    host_vae = HostVAE(module, vae_dtype=torch.float64)
    before = dict(module.named_parameters())
    z = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    (frames,) = NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": z})
    float64 = build_wan({k: v.double() for k, v in wan21_pair[0].state_dict().items()})
    assert torch.equal(frames, engine.decode(float64, z))
    assert all(p is before[k] and p.dtype == torch.float32 for k, p in module.named_parameters())


def test_a_four_dimensional_latent_on_the_socket_is_an_image_latent(host_vae):
    """[16, 16, H, W] could pass for [C, T, H, W]; on a node it is a batch of 16 image latents."""
    with pytest.raises(FrameStreamError, match=r"image latent \[B, C, H, W\]"):
        NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": torch.randn(16, 16, 4, 4)})


def test_decode_node_previews_the_newest_frame(host_vae, fake_host):
    NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": torch.randn(1, 16, 3, 2, 3)})
    assert fake_host.previews[0] is None
    kind, image, size = fake_host.previews[-1]
    assert kind == "JPEG" and image.size == (24, 16) and size == host.PREVIEW_SIZE


def test_nodes_report_progress_with_eta_on_the_console(host_vae, fake_host, capsys):
    NODE_CLASS_MAPPINGS["FrameStreamDecode"]().decode(host_vae, {"samples": torch.randn(1, 16, 3, 2, 3)})
    NODE_CLASS_MAPPINGS["FrameStreamEncode"]().encode(host_vae, torch.rand(5, 16, 24, 3))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "FrameStream decode   0%|          | 0/3 steps [00:00<?]"
    assert lines[1].startswith("FrameStream decode 100%|##########| 3/3 steps [00:0")  # not a terminal: no
    assert lines[2] == "FrameStream encode   0%|          | 0/2 steps [00:00<?]"  # redraws within 5 s
    assert lines[3].startswith("FrameStream encode 100%|##########| 2/2 steps [00:0")
    assert lines[3].endswith(" s/step]") and len(lines) == 4


def test_decode_node_tiles_under_a_budget_and_with_custom_tiles(host_vae, fake_host, wan21_pair):
    z = torch.randn(1, 16, 2, 20, 20, generator=torch.Generator().manual_seed(5))
    node = NODE_CLASS_MAPPINGS["FrameStreamDecode"]()
    (custom,) = node.decode(host_vae, {"samples": z}, tiles="custom", tile_size=64, tile_overlap=16)
    assert torch.equal(custom, engine.decode(wan21_pair[1], z, tile=64, overlap=16))
    fake_host.free = 1  # nothing free: auto picks the smallest tiles
    (auto,) = node.decode(host_vae, {"samples": z}, tiles="auto", tile_overlap=8)
    assert not torch.equal(auto, engine.decode(wan21_pair[1], z))
    (none,) = node.decode(host_vae, {"samples": z}, tiles="none")
    assert torch.equal(none, engine.decode(wan21_pair[1], z))


def test_decode_to_video_node_writes_a_numbered_mp4_in_the_output_folder(host_vae, fake_host, tmp_path):
    from framestream.vae_core.io.video import probe_video

    node = NODE_CLASS_MAPPINGS["FrameStreamDecodeToVideo"]()
    z = torch.randn(1, 16, 3, 2, 3)
    for number in (1, 2):
        out = node.decode(host_vae, {"samples": z}, 24.0, "clips/run", "h264", 19)
        video, path = out["result"]
        assert path == str(tmp_path / "output" / "clips" / f"run_{number:05d}.mp4")
        info = probe_video(path)
        assert (info.frames, info.fps, info.width, info.height) == (9, 24.0, 24, 16)
        assert out["ui"]["images"] == [{"filename": f"run_{number:05d}.mp4", "subfolder": "clips", "type": "output"}]


@pytest.mark.parametrize("prefix", ["../escape", "clips/../../escape", "/tmp/absolute", ""])
def test_decode_to_video_node_refuses_prefixes_outside_the_output_folder(host_vae, fake_host, tmp_path, prefix):
    with pytest.raises(FrameStreamError, match="filename_prefix"):
        NODE_CLASS_MAPPINGS["FrameStreamDecodeToVideo"]().decode(host_vae, {"samples": torch.randn(1, 16, 2, 2, 2)},
                                                                 16.0, prefix, "h264", 19)
    assert not any((tmp_path / "output").rglob("*.mp4")) and not (tmp_path.parent / "escape_00001.mp4").exists()


def test_interrupted_decode_to_video_leaves_no_file(host_vae, fake_host, tmp_path):
    fake_host.interrupt_at = 2
    with pytest.raises(KeyboardInterrupt):
        NODE_CLASS_MAPPINGS["FrameStreamDecodeToVideo"]().decode(host_vae, {"samples": torch.randn(1, 16, 6, 2, 2)},
                                                                 16.0, "FrameStream/video", "h264", 19)
    assert [p for p in (tmp_path / "output").rglob("*") if p.is_file()] == []


@pytest.mark.filterwarnings("ignore:encoding .* the rest is left out")  # the file has frames beyond 1 + 4k
def test_encode_video_file_node_equals_encoding_the_frames(host_vae, fake_host, tmp_path, wan21_pair):
    from framestream.vae_core.demo import moving_shapes
    from framestream.vae_core.io.video import VideoFileSink, read_video

    (tmp_path / "input").mkdir()
    clip = moving_shapes(11, 32, 40)
    sink = VideoFileSink(tmp_path / "input" / "clip.mkv", 16, lossless=True)
    sink.start((1, *clip.shape))
    sink.write(0, 0, clip)
    sink.result()
    node = NODE_CLASS_MAPPINGS["FrameStreamEncodeVideoFile"]()
    assert "clip.mkv" in node.INPUT_TYPES()["required"]["file"][0]
    (latent,) = node.encode(host_vae, "clip.mkv", start_frame=1, frame_count=5, stride=2, width=0, height=0)
    frames = torch.cat(list(read_video(tmp_path / "input" / "clip.mkv")))[1:11:2]
    assert torch.equal(latent["samples"], engine.encode(wan21_pair[1], frames))
    (resized,) = node.encode(host_vae, "clip.mkv", start_frame=0, frame_count=0, stride=1, width=48, height=16)
    assert resized["samples"].shape == (1, 16, 3, 2, 6)
    with pytest.raises(FrameStreamError, match="both width and height"):
        node.encode(host_vae, "clip.mkv", start_frame=0, frame_count=0, stride=1, width=48, height=0)
