"""Helpers the test modules share (test modules never import one another).

Node helpers read the V3 schemas: with the host's ``comfy_api`` inside ComfyUI, with FrameStream's standalone
stand-in here; both give inputs the same fields (id, optional, default, min, max, step, options, upload).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch
from safetensors.torch import save_file

from framestream.nodes import NODES as _NODE_LIST
from framestream.vae_core import load_vae
from framestream.vae_core.streaming import engine, group_norm

NODES = {cls.define_schema().node_id: cls for cls in _NODE_LIST}  # node id -> class
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")  # what the frontend shows as widgets


def norm_inputs_moments(model, run) -> dict:
    """Every streaming GroupNorm's input moments over what ``run()`` gives it in one call (no stream, no windows),
    by layer id: the statistics a clip-wide decode must reach."""
    moments = {}
    hooks = [m.register_forward_hook(lambda m, args, out: moments.__setitem__(id(m), group_norm.Moments.of(
        args[0], m.num_groups))) for m in model.modules() if isinstance(m, group_norm.GroupNorm)]
    with torch.no_grad():
        run()
    for hook in hooks:
        hook.remove()
    return moments


def assert_damaged_files_named(sd: dict, family: str, missing_prefix: str, cut_key: str) -> None:
    """A family's file without the tensors under ``missing_prefix`` is called incomplete naming the first, and one
    whose ``cut_key`` lost rows is called a mismatch, both naming the family (not "unrecognised")."""
    from framestream.vae_core import build_vae
    from framestream.vae_core.errors import FrameStreamError

    incomplete = {k: v for k, v in sd.items() if not k.startswith(missing_prefix)}
    with pytest.raises(FrameStreamError, match=f"looks like an? {family} but is incomplete: missing '{missing_prefix}"):
        build_vae(incomplete)
    cut = dict(sd)
    cut[cut_key] = cut[cut_key][: cut[cut_key].shape[0] // 2]
    with pytest.raises(FrameStreamError, match=f"looks like an? {family} but does not match its architecture"):
        build_vae(cut)


def input_type(spec) -> str:
    return str(spec.get_io_type())


def widget_names(cls) -> list[str]:
    """The inputs the frontend shows as widgets, in the order it stores their values (required, then optional)."""
    inputs = cls.define_schema().inputs
    ordered = [i for i in inputs if not i.optional] + [i for i in inputs if i.optional]
    return [i.id for i in ordered if input_type(i) in WIDGET_TYPES]


def has_upload_button(cls) -> bool:
    """The frontend stores an upload button's state after the widget values (e.g. 'image')."""
    return any(getattr(i, "upload", None) is not None for i in cls.define_schema().inputs)


def interface(cls) -> dict:
    """What saved workflows depend on, in the form of ``tests/data/node_interface_v1.json``."""
    schema = cls.define_schema()
    inputs = []
    for spec in [i for i in schema.inputs if not i.optional] + [i for i in schema.inputs if i.optional]:
        entry = {"name": spec.id, "optional": bool(spec.optional), "type": input_type(spec)}
        if entry["type"] == "COMBO" and spec.options is not None:
            entry["options"] = list(spec.options)
        for key in ("default", "min", "max", "step", "round"):
            value = getattr(spec, key, None)
            if value is not None:
                entry[key] = value
        if getattr(spec, "upload", None) is not None:
            entry["upload"] = spec.upload.value
        inputs.append(entry)
    return {"display_name": schema.display_name, "category": schema.category,
            "output_node": bool(schema.is_output_node), "inputs": inputs,
            "outputs": [o.io_type for o in schema.outputs],
            "output_names": [o.display_name or o.io_type for o in schema.outputs]}


class NestedLatent:
    """What the host's ``comfy.nested_tensor.NestedTensor`` shows a node (an audio+video model's LATENT): its
    parts, video first, through ``unbind()``, flagged by ``is_nested``. The host tests use the host's own."""

    is_nested = True

    def __init__(self, *parts) -> None:
        self.tensors = list(parts)

    def unbind(self):
        return self.tensors

    @property
    def shape(self):
        return self.tensors[0].shape


def tone(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0):
    """A sound an audio codec keeps well: a few sines per channel, ``[channels, n]`` in [-0.5, 0.5]."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * rate)) / rate
    pitches = 220 + 660 * torch.rand(channels, 3, generator=gen)
    return (0.5 / 3) * torch.sin(2 * torch.pi * pitches[..., None] * t).sum(1)


def rotate_mp4(path, matrix: tuple[int, ...] = (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)) -> None:
    """Sets an mp4's display matrix (its first track header), as phones record portrait video; the default
    turns it by 90 degrees (PyAV reports a frame rotation of -90)."""
    import struct

    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = data.find(b"tkhd")
    offset = at + 8 + (20 if data[at + 4] == 0 else 32) + 16  # version/flags, times and ids, reserved/layer/volume
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------------------------
# Host tests: a real ComfyUI (COMFYUI_DIR) on the CPU with the pack in custom_nodes (the server is conftest's
# ``comfy`` fixture), and what the host test modules share to drive it.

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
needs_host = pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run host tests")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_DIR_NAME = "ComfyUI-FrameStream"
VAE_NAME = "wan_2.1_vae.safetensors"
TOL = 1e-4
FILE_TOL = 0.5 / 255 + TOL  # frames of a lossless 8-bit file, rounded


def host_python() -> str:
    """The interpreter with the host's requirements (COMFYUI_PYTHON; default: this one)."""
    return os.environ.get("COMFYUI_PYTHON", sys.executable)


def host_module(name: str):
    """One of the host's own modules (``comfy.ldm.seedvr.vae`` ...) imported into this process, the host set to
    run on the CPU first, as its ``--cpu`` flag would: an oracle run beside FrameStream in one process."""
    if COMFYUI_DIR not in sys.path:
        sys.path.insert(0, COMFYUI_DIR)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    return importlib.import_module(name)


def host_version() -> tuple[int, ...]:
    """The version of the ComfyUI checkout under test (its ``comfyui_version.py``)."""
    with open(os.path.join(COMFYUI_DIR, "comfyui_version.py")) as f:
        found = re.search(r'__version__ = "([0-9.]+)"', f.read())
    return tuple(int(part) for part in found.group(1).split("."))


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


class FrameStreamTestProbeAudio(FrameStreamTestProbeImage):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",), "name": ("STRING", {"default": "probe"})}}

    def save(self, audio, name):
        import torch
        return _save(audio["waveform"], name, rate=torch.tensor([float(audio["sample_rate"])]))


NODE_CLASS_MAPPINGS = {"FrameStreamTestProbeImage": FrameStreamTestProbeImage,
                       "FrameStreamTestProbeLatent": FrameStreamTestProbeLatent,
                       "FrameStreamTestProbeAudio": FrameStreamTestProbeAudio}
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


def write_host_inputs(base) -> None:
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



@contextlib.contextmanager
def running_host(base, extra_args: tuple[str, ...] = ()):
    """A ComfyUI server on the CPU with ``base`` as its base directory, the pack and the probe pack in its
    custom_nodes; yields its URL and log path, and stops it afterwards. ``FRAMESTREAM_FRONTEND_ROOT`` serves
    another unpacked web frontend (``--front-end-root``)."""
    (base / "custom_nodes").mkdir(exist_ok=True)
    if not (base / "custom_nodes" / PACK_DIR_NAME).exists():
        os.symlink(ROOT, base / "custom_nodes" / PACK_DIR_NAME)
    (base / "custom_nodes" / "framestream_test_probe").mkdir(exist_ok=True)
    (base / "custom_nodes" / "framestream_test_probe" / "__init__.py").write_text(PROBE_PACK)
    port = _free_port()
    log_path = base / "server.log"
    command = [host_python(), "main.py", "--cpu", "--listen", "127.0.0.1",
               "--port", str(port), "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
               "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_DIR_NAME, "framestream_test_probe",
               *extra_args]
    if os.environ.get("FRAMESTREAM_FRONTEND_ROOT"):
        command += ["--front-end-root", os.environ["FRAMESTREAM_FRONTEND_ROOT"]]
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
        yield url, log_path
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


def probe(base, name: str, part: str = "value") -> torch.Tensor:
    """What a probe node saved (``part``: another tensor it saved beside the value, e.g. an audio's "rate")."""
    from safetensors.torch import load_file

    return load_file(base / "output" / f"{name}.safetensors")[part]


def count_frames(path) -> tuple[int, float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), float(stream.average_rate)


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


def read_file_frames(path) -> torch.Tensor:
    """The 8-bit frames a (lossless) file holds, as floats."""
    from framestream.vae_core.io.video_reader import EIGHT_BIT, read_video

    return torch.cat(list(read_video(path, reading=EIGHT_BIT)))




def save_latent_input(base, name: str, latent: torch.Tensor) -> None:
    save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])}, base / "input" / name)


def run_shipped_decode(server, workflow: str, vae_name: str, latent_name: str, extra: dict | None = None):
    """The shipped workflow on the test's files, its video written losslessly under its own prefix; the
    frames and fps of the file it wrote."""
    url, base, _ = server
    prefix = latent_name.removesuffix(".latent")
    prompt = load_workflow(workflow)
    prompt["1"]["inputs"]["vae_name"] = vae_name
    prompt["2"]["inputs"]["latent"] = latent_name
    prompt["3"]["inputs"].update(codec="h264 lossless (RGB)", filename_prefix=f"FrameStream/{prefix}")
    prompt.update(extra or {})
    assert_success(run_prompt(url, prompt))
    [video] = list((base / "output" / "FrameStream").glob(f"{prefix}_*.mp4"))
    return read_file_frames(video), count_frames(video)[1]


def host_load_vae_and_decode(vae_name: str, probe_name: str) -> dict:
    """Nodes to merge over a shipped decode workflow (``run_shipped_decode``'s ``extra``): its VAE from the host's
    own *Load VAE* (node 1), and the host's *VAE Decode* of its latent (node 2) saved by a probe as ``probe_name``."""
    return {"1": {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}},
            "5": {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}},
            "6": {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["5", 0], "name": probe_name}}}


def library_decode(path, latent, **settings):
    model = load_vae(str(path))
    for name, value in settings.items():
        setattr(model, name, value)
    return engine.decode(model, latent)



DIT_SIZE, DIT_LENGTH = 32, 9  # the long-video and preview tests' clips: 4x4 latents, 3 latent frames
# the test DiTs (conftest's host_with_dits) in models/diffusion_models: Wan 2.1 I2V, FLF2V and T2V at width 128,
# I2V and FLF2V once more with zero image values, and the T2V weights as a Causal-Wan (test_causal_wan)

HOST_DIT_SCRIPT = '''
import os
import sys
sys.path.insert(0, os.getcwd())
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import json
import torch
import comfy.ops
from safetensors.torch import save_file
from comfy.ldm.wan.model import WanModel

out = os.environ["FRAMESTREAM_DIT_DIR"]
for name, model_type, in_dim, extra in [("i2v", "i2v", 36, {}), ("flf2v", "i2v", 36, {"flf_pos_embed_token_number": 514}),
                                        ("t2v", "t2v", 16, {})]:
    torch.manual_seed(0)
    model = WanModel(model_type=model_type, in_dim=in_dim, dim=128, ffn_dim=64, num_heads=1, num_layers=2, out_dim=16,
                     operations=comfy.ops.disable_weight_init, **extra)
    with torch.no_grad():  # the host's layers skip weight init
        for p in model.parameters():
            p.normal_(0, p[0].numel() ** -0.5 if p.ndim > 1 else 0.05)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, os.path.join(out, f"test_wan_{name}.safetensors"))
    if name == "t2v":  # the same weights as a Causal-Wan (Causal Forcing) file: hosts with the AR sampler read the
        #               metadata's config and build their causal model (2026)
        save_file(weights, os.path.join(out, "test_causal_wan.safetensors"),
                  metadata={"config": json.dumps({"transformer": {"causal_ar": True}})})
    if model_type == "i2v":  # the reference for strength 0: image values that add exactly nothing
        for k in weights:
            if ".cross_attn.v_img." in k:
                weights[k] = torch.zeros_like(weights[k])
        save_file(weights, os.path.join(out, f"test_wan_{name}_no_image_values.safetensors"))
'''


def step_estimate(vae, height: int, width: int, per_step: int, tile_px: int | None = None, *,
                  direction: str = "decode", length: int = 0, device=None, **step):
    """The memory estimate of one step of ``vae`` (``step``: ``overlap_px``, ``offload_carries``)."""
    from framestream.vae_core.streaming import memory
    from framestream.vae_core.streaming.estimate import estimate

    return estimate(memory.request_for(vae, direction, height=height, width=width, per_step=per_step, length=length,
                                       device=device, tile_px=tile_px, **step))
