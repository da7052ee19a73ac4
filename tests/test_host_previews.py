"""Whole-clip previews and TAE drafts in a real ComfyUI on CPU (runs only with ``COMFYUI_DIR``, as
test_host_comfyui.py): a small random Wan model sampled through FrameStream Whole-Clip Preview, with the
previews read off the host's websocket as the frontend receives them, and the shipped draft workflow on a
random-weight TAE in models/vae_approx."""

from __future__ import annotations

import asyncio
import io
import json
import uuid

import pytest
import torch
from safetensors.torch import save_file

from helpers import DIT_LENGTH as LENGTH, DIT_SIZE as SIZE, FILE_TOL, library_decode, needs_host, run_shipped_decode
from helpers import save_latent_input as _save_latent
from oracle import random_tensors

from framestream.vae_core.models.taehv.model import TinyVideoConfig

pytestmark = needs_host

TAE = "taew2_1.safetensors"  # full width, as released


@pytest.fixture(scope="module")
def tae_installed(host_with_dits):
    url, base, _ = host_with_dits
    (base / "models" / "vae_approx").mkdir(parents=True, exist_ok=True)
    save_file(random_tensors(TinyVideoConfig(), seed=7), base / "models" / "vae_approx" / TAE)
    return url, base


def sampling_prompt(decoder: str) -> dict:
    """Text-to-video with the test DiT, two steps, through the preview node."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "test_wan_t2v.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "FrameStreamWholeClipPreview",
              "inputs": {"model": ["1", 0], "decoder": decoder, "size": 64, "fps": 8.0, "every": 1}},
        "3": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": 8.0}},
        "4": {"class_type": "FrameStreamTestText", "inputs": {"seed": 1}},
        "5": {"class_type": "FrameStreamTestText", "inputs": {"seed": 2}},
        "6": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": SIZE, "height": SIZE, "length": LENGTH, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {"model": ["3", 0], "seed": 3, "steps": 2, "cfg": 3.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "positive": ["4", 0],
                                                   "negative": ["5", 0], "latent_image": ["6", 0], "denoise": 1.0}},
        "8": {"class_type": "FrameStreamTestProbeLatent", "inputs": {"samples": ["7", 0], "name": f"preview_{decoder}"}},
    }


async def _previews(url: str, prompt: dict) -> list[bytes]:
    """Posts the prompt as a frontend would and returns the preview images the host sent it."""
    import aiohttp  # the host's own dependency

    client = uuid.uuid4().hex
    images = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url.replace('http', 'ws')}/ws?clientId={client}") as ws:
            async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": client}) as response:
                assert response.status == 200, await response.text()
                prompt_id = (await response.json())["prompt_id"]
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY and int.from_bytes(message.data[:4], "big") == 1:
                    images.append(message.data[8:])  # event, image type, then the image
                elif message.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(message.data)
                    if event["type"] == "execution_error":
                        raise AssertionError(event["data"]["exception_message"])
                    if event["type"] == "executing" and event["data"]["node"] is None \
                            and event["data"].get("prompt_id") == prompt_id:
                        return images
    raise AssertionError("the websocket closed before the prompt finished")


@pytest.mark.parametrize("decoder, frames, size", [("auto", LENGTH, (64, 64)), ("latent to RGB", 3, (64, 64))])
def test_every_step_previews_the_whole_clip_moving(tae_installed, decoder, frames, size):
    from PIL import Image

    url, _ = tae_installed
    previews = asyncio.run(_previews(url, sampling_prompt(decoder)))
    animations = [Image.open(io.BytesIO(data)) for data in previews]
    animations = [image for image in animations if image.format == "WEBP"]
    assert len(animations) == 2  # one per step
    assert all(image.n_frames == frames and image.size == size for image in animations)


def test_the_draft_workflow_decodes_with_a_tae_from_vae_approx(tae_installed, host_with_dits):
    url, base = tae_installed
    latent = torch.randn(1, 16, 3, 4, 3, generator=torch.Generator().manual_seed(8))
    _save_latent(base, "wan21_draft.latent", latent)
    frames, fps = run_shipped_decode((url, base, None), "wan_tae_draft_to_file.json", f"vae_approx/{TAE}",
                                     "wan21_draft.latent")
    expected = library_decode(base / "models" / "vae_approx" / TAE, latent)
    assert frames.shape == (9, 32, 24, 3) and fps == 16.0
    assert (frames - expected).abs().max().item() <= FILE_TOL
