"""FrameStream inside a real ComfyUI, compared with the host's own VAE nodes.

Runs only when ``COMFYUI_DIR`` points at a ComfyUI checkout (it is not on
PyPI, so CI skips this module). ``COMFYUI_PYTHON`` names the interpreter with
the host's requirements (default: this one). Nothing is written into the
checkout: the server gets a temporary base directory holding the pack (as a
link named like a git clone), a random-weight Wan 2.1 VAE, the inputs, and a
small probe pack that saves tensors exactly (the core savers write 8-bit PNGs).

    COMFYUI_DIR=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python pytest tests/test_host_comfyui.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run host tests")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_DIR_NAME = "ComfyUI-FrameStream"
VAE_NAME = "wan_2.1_vae.safetensors"
TOL = 1e-4

PROBE_PACK = '''
import os
import folder_paths
from safetensors.torch import save_file


def _save(tensor, name, **more):
    os.makedirs(folder_paths.get_output_directory(), exist_ok=True)
    tensors = {"value": tensor, **more}
    save_file({k: v.contiguous().float() for k, v in tensors.items()},
              os.path.join(folder_paths.get_output_directory(), name + ".safetensors"))
    return {}


class FrameStreamTestProbeImage:
    CATEGORY, FUNCTION, OUTPUT_NODE, RETURN_TYPES = "testing", "save", True, ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "name": ("STRING", {"default": "probe"})}}

    def save(self, images, name):
        return _save(images, name)


class FrameStreamTestProbeLatent(FrameStreamTestProbeImage):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "name": ("STRING", {"default": "probe"})}}

    def save(self, samples, name):
        return _save(samples["samples"], name)


NODE_CLASS_MAPPINGS = {"FrameStreamTestProbeImage": FrameStreamTestProbeImage,
                       "FrameStreamTestProbeLatent": FrameStreamTestProbeLatent}
'''

# stand-ins for the text and CLIP-vision encoders, for test_host_long_video.py
PROBE_PACK += '''
import torch
import comfy.clip_vision


class FrameStreamTestText:
    """Stands in for CLIPTextEncode: fixed random embeddings of T5's width."""
    CATEGORY, FUNCTION, RETURN_TYPES = "testing", "encode", ("CONDITIONING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0})}}

    def encode(self, seed):
        tokens = torch.randn(1, 12, 4096, generator=torch.Generator().manual_seed(seed))
        return ([[tokens, {"pooled_output": None}]],)


class FrameStreamTestClipVision:
    """Stands in for CLIPVisionEncode: 257 tokens of width 1280 per image, each image's own."""
    CATEGORY, FUNCTION, RETURN_TYPES = "testing", "encode", ("CLIP_VISION_OUTPUT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    def encode(self, image):
        base = torch.randn(257, 1280, generator=torch.Generator().manual_seed(0))
        out = comfy.clip_vision.Output()
        out.penultimate_hidden_states = base * (1 + image.mean(dim=(1, 2, 3))).view(-1, 1, 1)
        return (out,)


class FrameStreamTestProbeConditioning(FrameStreamTestProbeImage):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "name": ("STRING", {"default": "probe"})}}

    def save(self, conditioning, name):
        options = conditioning[0][1]
        return _save(options["concat_latent_image"], name, mask=options["concat_mask"],
                     clip=options["clip_vision_output"].penultimate_hidden_states)


NODE_CLASS_MAPPINGS.update({"FrameStreamTestText": FrameStreamTestText,
                            "FrameStreamTestClipVision": FrameStreamTestClipVision,
                            "FrameStreamTestProbeConditioning": FrameStreamTestProbeConditioning})
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_inputs(base) -> None:
    """A random-weight full-width Wan 2.1 VAE (the host hard-codes its widths), a latent, and a short mp4."""
    import av
    from safetensors.torch import save_file

    from framestream.vae_core.models.wan.model import WanConfig, WanVAE

    torch.manual_seed(0)
    vae = WanVAE(WanConfig.wan21())
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if name.endswith("gamma"):
                param.copy_(1 + 0.2 * torch.randn_like(param))
    (base / "models" / "vae").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, base / "models" / "vae" / VAE_NAME)

    (base / "input").mkdir()
    latent = torch.randn(1, 16, 3, 3, 4, generator=torch.Generator().manual_seed(1))
    save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])}, base / "input" / "wan_video.latent")
    long_latent = torch.randn(1, 16, 33, 2, 3, generator=torch.Generator().manual_seed(2))  # 129 frames
    save_file({"latent_tensor": long_latent, "latent_format_version_0": torch.tensor([])},
              base / "input" / "wan_long_video.latent")
    save_file({"latent_tensor": torch.randn(1, 4, 3, 3, 4), "latent_format_version_0": torch.tensor([])},
              base / "input" / "sd_image.latent")

    with av.open(str(base / "input" / "input_video.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(9):
            y, x = torch.meshgrid(torch.arange(32), torch.arange(48), indexing="ij")
            rgb = torch.stack([(x * 5 + i * 20) % 256, (y * 7) % 256, ((x + y) * 3 + i * 9) % 256], -1).to(torch.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb.numpy(), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    os.symlink(ROOT, base / "custom_nodes" / PACK_DIR_NAME)
    (base / "custom_nodes" / "framestream_test_probe").mkdir()
    (base / "custom_nodes" / "framestream_test_probe" / "__init__.py").write_text(PROBE_PACK)
    _write_inputs(base)
    port = _free_port()
    log_path = base / "server.log"
    command = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
               "--port", str(port), "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
               "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_DIR_NAME, "framestream_test_probe"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/object_info/FrameStreamDecode", timeout=5) as r:
                    if json.load(r):
                        break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"ComfyUI did not start with the pack; log:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url, base, log_path
    finally:
        process.terminate()
        process.wait(timeout=60)


def run_prompt(url: str, prompt: dict, timeout: float = 600) -> dict:
    """Posts an API prompt and waits for its history entry."""
    request = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            prompt_id = json.load(r)["prompt_id"]
    except urllib.error.HTTPError as err:
        raise AssertionError(f"prompt rejected: {err.read().decode()[:2000]}") from None
    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(f"{url}/history/{prompt_id}", timeout=30) as r:
            history = json.load(r)
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.5)
    raise AssertionError("prompt did not finish in time")


def assert_success(result: dict) -> None:
    errors = [m[1] for m in result["status"]["messages"] if m[0] == "execution_error"]
    assert result["status"]["status_str"] == "success", [(e["node_type"], e["exception_message"]) for e in errors]


def assert_fails_with(url: str, prompt: dict, message: str) -> None:
    result = run_prompt(url, prompt)
    assert result["status"]["status_str"] == "error"
    assert message in json.dumps(result["status"]["messages"])


def load_workflow(name: str) -> dict:
    with open(os.path.join(ROOT, "workflows", "api", name)) as f:
        return json.load(f)


def probe(base, name: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(base / "output" / f"{name}.safetensors")["value"]


def count_frames(path) -> tuple[int, float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), float(stream.average_rate)


def test_pack_loads_in_the_host(comfy):
    url, _, log_path = comfy
    log = log_path.read_text()
    assert "IMPORT FAILED" not in log or PACK_DIR_NAME not in log.split("IMPORT FAILED", 1)[1][:300]
    with urllib.request.urlopen(f"{url}/object_info") as r:
        info = json.load(r)
    for name in ("FrameStreamDecode", "FrameStreamEncode", "FrameStreamDecodeToVideo", "FrameStreamEncodeVideoFile"):
        assert name in info and info[name]["category"] == "FrameStream"


def workflow_with_test_vae(name: str) -> dict:
    prompt = load_workflow(name)
    prompt["1"]["inputs"]["vae_name"] = VAE_NAME
    return prompt


def add_comparison(prompt: dict, host_node: dict, ours: list, kind: str, name: str) -> None:
    """Adds ``host_node`` (the host's own VAE node on the same inputs) and exact probes of it and of ``ours``."""
    probe_class, socket = {"image": ("FrameStreamTestProbeImage", "images"),
                           "latent": ("FrameStreamTestProbeLatent", "samples")}[kind]
    host_id = str(max(int(k) for k in prompt) + 1)
    prompt[host_id] = host_node
    for offset, (source, label) in enumerate([([host_id, 0], "host"), (ours, "fs")], 1):
        prompt[str(int(host_id) + offset)] = {"class_type": probe_class,
                                              "inputs": {socket: source, "name": f"{label}_{name}"}}


def assert_same_as_host(base, name: str, shape: tuple | None = None) -> torch.Tensor:
    ours, theirs = probe(base, f"fs_{name}"), probe(base, f"host_{name}")
    assert ours.shape == theirs.shape and (shape is None or ours.shape == shape)
    assert (ours - theirs).abs().max().item() <= TOL
    return ours


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


def read_file_frames(path) -> torch.Tensor:
    from framestream.vae_core.io.video import read_video

    return torch.cat(list(read_video(path)))


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


def test_ui_workflows_load_in_the_frontend_as_their_api_twins(comfy):
    """Each drag-and-drop workflow, loaded by the real web frontend, runs exactly its API twin."""
    pytest.importorskip("playwright", reason="the frontend check needs playwright and a Chromium")
    import frontend

    if not os.path.exists(frontend.CHROMIUM):
        pytest.skip(f"no Chromium at {frontend.CHROMIUM} (set FRAMESTREAM_CHROMIUM)")
    url, _, _ = comfy
    names = sorted(n for n in os.listdir(os.path.join(ROOT, "workflows")) if n.endswith(".json"))
    assert names == sorted(os.listdir(os.path.join(ROOT, "workflows", "api")))
    with frontend.open_frontend(url) as page:
        for name in names:
            with open(os.path.join(ROOT, "workflows", name)) as f:
                ui = json.load(f)
            assert frontend.missing_node_types(page, ui) == [], name
            assert frontend.without_meta(frontend.ui_to_api(page, ui, name)) == load_workflow(name), name


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
    done = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(script)], cwd=COMFYUI_DIR,
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
