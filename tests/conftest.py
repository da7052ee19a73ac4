"""Test set-up: import the checkout as the package ``framestream``, and build diffusers oracles.

The checkout is imported by path (as ComfyUI imports a custom-node folder), so
the tests exercise the working tree whatever the folder is called.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkout  # noqa: E402  (the tests' own helper, beside this file)

checkout.load()
torch.set_num_threads(min(2, torch.get_num_threads()))

from oracle import WAN21_SMALL, WAN22_SMALL, diffusers_wan  # noqa: E402


@pytest.fixture(scope="session")
def wan21_pair():
    """(diffusers oracle, our model sharing its weights) for a reduced-width Wan 2.1."""
    from framestream.vae_core import build_wan

    ref = diffusers_wan(WAN21_SMALL)
    return ref, build_wan(ref.state_dict())


@pytest.fixture(scope="session")
def wan22_pair():
    from framestream.vae_core import build_wan

    ref = diffusers_wan(WAN22_SMALL, seed=1)
    return ref, build_wan(ref.state_dict())


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of tiny convs (two threads on a busy two-core machine spin slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A real ComfyUI (COMFYUI_DIR) on the CPU for a host test module: the pack, the probe pack, a random-weight
    full-width Wan 2.1 VAE, latents and a short mp4 in its folders. Yields (url, base folder, log path)."""
    from helpers import COMFYUI_DIR, running_host, write_host_inputs

    if not COMFYUI_DIR:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to run host tests")
    base = tmp_path_factory.mktemp("comfy_base")
    write_host_inputs(base)
    with running_host(base) as (url, log_path):
        yield url, base, log_path


@pytest.fixture(scope="module")
def host_with_dits(comfy):
    """The server, with small random Wan I2V / FLF2V / T2V DiTs (the host's own ``WanModel``, written by its
    interpreter), keyframe images and a clip latent in its folders. Yields (url, base, the clip latent)."""
    import subprocess

    from PIL import Image
    from safetensors.torch import save_file

    from helpers import COMFYUI_DIR, DIT_SIZE, HOST_DIT_SCRIPT, host_python

    url, base, _ = comfy
    (base / "models" / "diffusion_models").mkdir(parents=True, exist_ok=True)
    script = base / "host_dit.py"
    script.write_text(HOST_DIT_SCRIPT)
    done = subprocess.run([host_python(), str(script)], cwd=COMFYUI_DIR,
                          env={**os.environ, "FRAMESTREAM_DIT_DIR": str(base / "models" / "diffusion_models")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    gen = torch.Generator().manual_seed(5)
    for name, size in [("start_frame", (48, 40)), ("keyframe_1", (48, 32)), ("keyframe_2", (48, 32)),
                       ("keyframe_3", (48, 32))]:
        pixels = (torch.rand(size[1], size[0], 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(base / "input" / f"{name}.png")
    clip = torch.randn(1, 16, 3, DIT_SIZE // 8, DIT_SIZE // 8, generator=gen)
    save_file({"latent_tensor": clip, "latent_format_version_0": torch.tensor([])}, base / "input" / "wan_clip.latent")
    return url, base, clip
