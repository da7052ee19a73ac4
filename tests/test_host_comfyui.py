"""FrameStream inside a real ComfyUI, compared with the host's own VAE nodes.

Runs only when ``COMFYUI_DIR`` points at a ComfyUI checkout (it is not on
PyPI, so CI skips this module). ``COMFYUI_PYTHON`` names the interpreter with
the host's requirements (default: this one). Nothing is written into the
checkout: the server (conftest's ``comfy``) gets a temporary base directory
holding the pack (as a link named like a git clone), a random-weight Wan 2.1
VAE, the inputs, and a small probe pack that saves tensors exactly (the core
savers write 8-bit PNGs).

    COMFYUI_DIR=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python pytest tests/test_host_comfyui.py
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest
import torch

from helpers import (COMFYUI_DIR, PACK_DIR_NAME, TOL, VAE_NAME, add_comparison, assert_fails_with,
                     assert_same_as_host, assert_success, count_frames, host_python, host_version, needs_host, probe,
                     read_file_frames, rotate_mp4, run_prompt, workflow_with_test_vae)

pytestmark = needs_host


def test_pack_loads_in_the_host(comfy):
    url, _, log_path = comfy
    log = log_path.read_text()
    assert "IMPORT FAILED" not in log or PACK_DIR_NAME not in log.split("IMPORT FAILED", 1)[1][:300]
    with urllib.request.urlopen(f"{url}/object_info") as r:
        info = json.load(r)
    for name in ("FrameStreamDecode", "FrameStreamEncode", "FrameStreamDecodeToVideo", "FrameStreamEncodeVideoFile"):
        assert name in info and info[name]["category"] == "FrameStream"


def test_decode_workflow_matches_host_vaedecode(comfy):
    url, base, _ = comfy
    prompt = workflow_with_test_vae("wan_streaming_decode.json")
    add_comparison(prompt, {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}}, ["3", 0],
                   "image", "decode")
    assert_success(run_prompt(url, prompt))
    assert_same_as_host(base, "decode", (9, 24, 32, 3))
    [video] = list((base / "output" / "FrameStream").glob("decode_*.mp4"))
    assert count_frames(video) == (9, 16.0)


def test_roundtrip_workflow_matches_host_vaeencode(comfy):
    url, base, _ = comfy
    prompt = workflow_with_test_vae("wan_encode_decode_roundtrip.json")
    add_comparison(prompt, {"class_type": "VAEEncode", "inputs": {"vae": ["1", 0], "pixels": ["3", 0]}}, ["4", 0],
                   "latent", "encode")
    add_comparison(prompt, {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["4", 0]}}, ["6", 0],
                   "image", "redecode")
    assert_success(run_prompt(url, prompt))
    ours = assert_same_as_host(base, "encode", (1, 16, 3, 4, 6))
    assert_same_as_host(base, "redecode")
    [video] = list((base / "output" / "FrameStream").glob("roundtrip_*.mp4"))
    assert count_frames(video) == (9, 16.0)
    [latent_file] = list((base / "output" / "FrameStream").glob("roundtrip_*.latent"))
    from safetensors.torch import load_file

    assert torch.equal(load_file(latent_file)["latent_tensor"], ours)


def test_long_video_workflow_streams_to_a_file_like_host_vaedecode(comfy):
    url, base, _ = comfy
    prompt = workflow_with_test_vae("wan_long_video_to_file.json")
    prompt["3"]["inputs"]["codec"] = "h264 lossless (RGB)"  # exact 8-bit frames to compare
    prompt["4"] = {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}}
    prompt["5"] = {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["4", 0], "name": "host_long"}}
    result = run_prompt(url, prompt)
    assert_success(result)
    [video] = list((base / "output" / "FrameStream").glob("long_*.mp4"))
    assert count_frames(video) == (129, 16.0)
    assert result["outputs"]["3"]["images"] == [{"filename": video.name, "subfolder": "FrameStream", "type": "output"}]
    assert (read_file_frames(video) - probe(base, "host_long")).abs().max().item() <= 0.5 / 255 + TOL
    assert [p.name for p in video.parent.iterdir() if p.name.startswith(".")] == []  # no partial file left


def test_video_file_roundtrip_workflow_encodes_like_the_host(comfy):
    url, base, _ = comfy
    prompt = workflow_with_test_vae("wan_video_file_roundtrip.json")
    prompt["10"] = {"class_type": "LoadVideo", "inputs": {"file": "input_video.mp4"}}
    prompt["11"] = {"class_type": "GetVideoComponents", "inputs": {"video": ["10", 0]}}
    add_comparison(prompt, {"class_type": "VAEEncode", "inputs": {"vae": ["1", 0], "pixels": ["11", 0]}}, ["2", 0],
                   "latent", "file_encode")
    assert_success(run_prompt(url, prompt))
    assert_same_as_host(base, "file_encode", (1, 16, 3, 4, 6))
    [video] = list((base / "output" / "FrameStream").glob("file_roundtrip_*.mp4"))
    assert count_frames(video) == (9, 16.0)


def _write_clip(path, pixel_format: str, width: int, height: int, rotated: bool = False) -> None:
    """9 frames of moving colour in ``pixel_format`` (10-bit, full range ...), optionally stored sideways with a
    display rotation as phones do."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        y, x = np.mgrid[0:height, 0:width]
        for i in range(9):
            rgb = np.stack([(x * 900 + i * 5000) % 65536, (y * 1500) % 65536, ((x + y) * 700 + i * 2000) % 65536], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint16), format="rgb48le").reformat(format=pixel_format)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    if rotated:
        rotate_mp4(path)


@pytest.mark.parametrize("name, pixel_format, width, height, rotated", [
    ("tenbit.mkv", "yuv420p10le", 64, 32, False),  # float at the file's bit depth
    ("fullrange.mkv", "yuvj420p", 48, 32, False),  # 8-bit full range: through bytes in 0.21+
    ("portrait.mp4", "yuv420p", 48, 32, True),  # turned upright in 0.21+
    ("odd.mkv", "yuv444p", 40, 24, False),  # unaligned, no chroma subsampling
])
def test_encode_video_file_reads_frames_as_the_hosts_load_video(comfy, name, pixel_format, width, height, rotated):
    """FrameStream Encode Video File equals Load Video -> VAE Encode in the host running it, whichever way that
    host turns a file's frames into floats."""
    url, base, _ = comfy
    _write_clip(base / "input" / name, pixel_format, width, height, rotated)
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_NAME}},
        "2": {"class_type": "FrameStreamEncodeVideoFile",
              "inputs": {"vae": ["1", 0], "file": name, "start_frame": 0, "frame_count": 0, "stride": 1, "width": 0,
                         "height": 0}},
        "3": {"class_type": "LoadVideo", "inputs": {"file": name}},
        "4": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 0]}},
    }
    add_comparison(prompt, {"class_type": "VAEEncode", "inputs": {"vae": ["1", 0], "pixels": ["4", 0]}}, ["2", 0],
                   "latent", f"clip_{name}")
    assert_success(run_prompt(url, prompt))
    upright = (width, height) if not rotated or host_version() < (0, 21) else (height, width)
    assert_same_as_host(base, f"clip_{name}", (1, 16, 3, upright[1] // 8, upright[0] // 8))


def test_escaping_filename_prefix_is_refused_in_the_host(comfy):
    url, base, _ = comfy
    prompt = workflow_with_test_vae("wan_long_video_to_file.json")
    prompt["3"]["inputs"]["filename_prefix"] = "../outside/video"
    assert_fails_with(url, prompt, "leads outside the output folder")
    assert not (base / "outside").exists()


def test_wrong_latent_fails_with_our_message(comfy):
    url, _, _ = comfy
    prompt = workflow_with_test_vae("wan_streaming_decode.json")
    prompt["2"]["inputs"]["latent"] = "sd_image.latent"
    assert_fails_with(url, prompt, "latent has 4 channels but the Wan 2.1 VAE expects 16")


HOST_WAN22_SCRIPT = '''
import os
import sys
sys.path.insert(0, os.getcwd())
sys.argv = [sys.argv[0], "--cpu"]  # the output path comes by environment: the host parses argv
import comfy.options
comfy.options.enable_args_parsing()
import torch
from safetensors.torch import save_file
from comfy.ldm.wan.vae2_2 import WanVAE

torch.manual_seed(0)
model = WanVAE(dim=8, dec_dim=12, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
               temperal_downsample=[False, True, True]).eval()
with torch.no_grad():  # the host's layers skip weight init
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            p.copy_(1 + 0.2 * torch.randn_like(p))
        elif p.ndim > 1:
            p.normal_(0, p[0].numel() ** -0.5)
        else:
            p.normal_(0, 0.05)
z = torch.randn(1, 48, 3, 2, 3)
x = torch.rand(1, 3, 9, 32, 48) * 2 - 1
with torch.inference_mode():
    decoded, encoded = model.decode(z), model.encode(x)
tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
tensors.update({"io.z": z, "io.decoded": decoded, "io.x": x, "io.encoded": encoded})
save_file(tensors, os.environ["FRAMESTREAM_PROBE_OUT"])
'''


def test_wan22_matches_the_hosts_own_module(tmp_path):
    """The host's comfy.ldm.wan.vae2_2 at reduced width: same keys, same decode and encode."""
    from safetensors.torch import load_file

    from framestream.vae_core.streaming import engine
    from framestream.vae_core import build_wan

    script = tmp_path / "host_wan22.py"
    script.write_text(HOST_WAN22_SCRIPT)
    out = tmp_path / "host_wan22.safetensors"
    done = subprocess.run([host_python(), str(script)], cwd=COMFYUI_DIR,
                          env={**os.environ, "FRAMESTREAM_PROBE_OUT": str(out)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    tensors = load_file(out)
    io = {k[3:]: tensors.pop(k) for k in list(tensors) if k.startswith("io.")}
    ours = build_wan(tensors)
    assert set(ours.state_dict()) == set(tensors)
    frames = engine.decode(ours, io["z"])
    expected = ((io["decoded"] + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    assert frames.shape == expected.shape == (9, 32, 48, 3)
    assert (frames - expected).abs().max().item() <= TOL
    latent = engine.encode(ours, ((io["x"][0].permute(1, 2, 3, 0)) + 1) / 2)
    assert (latent - io["encoded"]).abs().max().item() <= TOL * max(1.0, io["encoded"].abs().max().item())
