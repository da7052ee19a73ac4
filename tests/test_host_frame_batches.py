"""Latents as a batch of per-frame latents (``[N, C, h, w]``, one video) in a real ComfyUI on CPU: the image-VAE
and Stable Video Diffusion workflows (runs only with ``COMFYUI_DIR``, as test_host_comfyui.py).

The random-weight models are the host's own classes, written by the host's
interpreter in the layouts of the real files, since the host's loaders take
their widths from a fixed config, not from the weights:

* an SD 1.x VAE (``AutoencoderKL``, full width: the host hard-codes 128-512),
  read by the host's *Load VAE*;
* an SVD checkpoint for *Image Only Checkpoint Loader*: the host's
  ``VideoUNet`` layout with every level 320 wide (the host recognises SVD by
  width 320, two res blocks a level and the transformer depths, not by the
  channel multipliers), the whole OpenCLIP ViT-H visual tower (the host picks
  its config by the number of layers; random, fp16, 1.9 GB in all), and the
  full-width SVD VAE (its config is fixed too).

Frames stay tiny (64 x 64 px; 16 x 16 for the 80-frame SVD clip) so full
widths cost seconds. Every decode is compared with the host's own *VAE Decode*
of the same latent, every encode with its *VAE Encode*.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from helpers import (COMFYUI_DIR, FILE_TOL, TOL, add_comparison, assert_same_as_host, assert_success, count_frames,
                     host_python, load_workflow, needs_host, probe, read_file_frames, run_prompt)
from helpers import save_latent_input as _save_latent

from framestream.vae_core.quality import psnr

pytestmark = needs_host

LOSSLESS = "h264 lossless (RGB)"
SD_VAE_NAME, SVD_NAME = "sd_vae_test.safetensors", "svd_test.safetensors"
SIZE, IMAGE_FRAMES, SVD_FRAMES = 64, 12, 5
LONG_SVD_FRAMES, LONG_SVD_SIZE = 80, 16  # over three of the decoder's 25-frame halos; 2 x 2 latents keep it cheap
# SVD's decoder mixes neighbouring frames and normalises over the clip; FrameStream decodes long clips in
# windows with gathered clip statistics, the host in one call. The bound tests/test_svd.py sets for that:
SVD_MIN_PSNR_DB = 50.0

HOST_MODELS_SCRIPT = '''
import os
import sys
sys.path.insert(0, os.getcwd())
sys.argv = [sys.argv[0], "--cpu"]  # the kind and output path come by environment: the host parses argv
import comfy.options
comfy.options.enable_args_parsing()
import torch
from safetensors.torch import save_file
import comfy.model_detection
import comfy.supported_models
from comfy.ldm.models.autoencoder import AutoencoderKL, AutoencodingEngine

GEN = torch.Generator().manual_seed(0)
SD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}  # comfy/sd.py's


def randn(*shape, scale=1.0):
    return scale * torch.randn(shape, generator=GEN)


def randomize(module):
    """The host's layers skip weight init: norms near 1, weights at 1/sqrt(fan_in), small biases."""
    with torch.no_grad():
        for m in module.modules():
            norm = isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm))
            for name, p in m.named_parameters(recurse=False):
                if norm:
                    p.copy_((name == "weight") + randn(*p.shape, scale=0.1))
                elif p.ndim > 1:
                    p.copy_(randn(*p.shape, scale=p[0].numel() ** -0.5))
                else:
                    p.copy_(randn(*p.shape, scale=0.05))
    return module


def sd_vae():
    """vae-ft-mse-840000's layout: AutoencoderKL with quant convs."""
    return randomize(AutoencoderKL(ddconfig=SD_VAE, embed_dim=4)).state_dict()


def svd_vae():
    """SVD's VAE exactly as comfy/sd.py builds it for `decoder.mid.block_1.mix_factor`."""
    decoder = {**SD_VAE, "video_kernel_size": [3, 1, 1], "alpha": 0.0}
    model = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": SD_VAE},
        decoder_config={"target": "comfy.ldm.modules.temporal_ae.VideoDecoder", "params": decoder})
    return randomize(model).state_dict()


# What model_detection reads off SVD's UNet, but every level 320 wide (channel_mult is not part of the match)
SVD_UNET = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 768, "in_channels": 8, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "channel_mult": [1, 1, 1, 1],
    "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 1024,
    "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
    "merge_factor": 0.0, "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True,
    "use_temporal_attention": True, "disable_temporal_crossattention": False,
}


def svd_unet():
    model = comfy.supported_models.SVD_img2vid(SVD_UNET).get_model({})
    return randomize(model.diffusion_model).state_dict()


def open_clip_vit_h(width=1280, layers=32, mlp=5120, tokens=257, patch=14, proj=1024):
    """OpenCLIP ViT-H/14's visual tower in its own layout (as in svd.safetensors); the host picks its config
    by the number of layers."""
    sd = {"class_embedding": randn(width, scale=0.5), "positional_embedding": randn(tokens, width, scale=0.5),
          "conv1.weight": randn(width, 3, patch, patch, scale=(3 * patch * patch) ** -0.5),
          "proj": randn(width, proj, scale=width ** -0.5)}
    for ln in ("ln_pre", "ln_post"):
        sd[f"{ln}.weight"], sd[f"{ln}.bias"] = 1 + randn(width, scale=0.1), randn(width, scale=0.05)
    for i in range(layers):
        block = f"transformer.resblocks.{i}."
        for ln in ("ln_1", "ln_2"):
            sd[f"{block}{ln}.weight"], sd[f"{block}{ln}.bias"] = 1 + randn(width, scale=0.1), randn(width, scale=0.05)
        for name, (n_out, n_in) in {"attn.in_proj_": (3 * width, width), "attn.out_proj.": (width, width),
                                    "mlp.c_fc.": (mlp, width), "mlp.c_proj.": (width, mlp)}.items():
            sd[f"{block}{name}weight"] = randn(n_out, n_in, scale=n_in ** -0.5)
            sd[f"{block}{name}bias"] = randn(n_out, scale=0.05)
    return sd


def prefixed(prefix, sd):
    return {prefix + k: v for k, v in sd.items()}


kind, out = os.environ["FRAMESTREAM_MODEL_KIND"], os.environ["FRAMESTREAM_PROBE_OUT"]
if kind == "sd_vae":
    tensors = sd_vae()
else:
    tensors = {**prefixed("model.diffusion_model.", svd_unet()),
               **prefixed("conditioner.embedders.0.open_clip.model.visual.", open_clip_vit_h()),
               **prefixed("first_stage_model.", svd_vae())}
    tensors = {k: v.half() for k, v in tensors.items()}  # as svd.safetensors
    config = comfy.model_detection.model_config_from_unet(tensors, "model.diffusion_model.")
    assert type(config) is comfy.supported_models.SVD_img2vid, type(config)
    assert config.unet_config["channel_mult"] == [1, 1, 1, 1], config.unet_config
save_file({k: v.contiguous() for k, v in tensors.items()}, out)
print(sum(v.numel() for v in tensors.values()))
'''


def _write_host_models(base, kind: str, path) -> None:
    script = base / "host_models.py"
    script.write_text(HOST_MODELS_SCRIPT)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([host_python(), str(script)], cwd=COMFYUI_DIR,
                          env={**os.environ, "FRAMESTREAM_MODEL_KIND": kind, "FRAMESTREAM_PROBE_OUT": str(path)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def sd_vae(comfy):
    """The server, with a random SD VAE and a 12-frame batch of image latents (as AnimateDiff saves them)."""
    url, base, _ = comfy
    _write_host_models(base, "sd_vae", base / "models" / "vae" / SD_VAE_NAME)
    latent = torch.randn(IMAGE_FRAMES, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))
    _save_latent(base, "frames.latent", latent)
    return url, base


@pytest.fixture(scope="module")
def svd(comfy):
    """The server, with a random SVD checkpoint and a start frame."""
    from PIL import Image

    url, base, log_path = comfy
    _write_host_models(base, "svd", base / "models" / "checkpoints" / SVD_NAME)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=torch.Generator().manual_seed(4)) * 255).to(torch.uint8)
    Image.fromarray(pixels.numpy()).save(base / "input" / "svd_start_frame.png")
    return url, base, log_path


def the_video(base, prefix: str):
    [video] = list((base / "output" / "FrameStream").glob(f"{prefix}_*.mp4"))
    return video


def test_image_frames_workflow_decodes_like_the_hosts_vae_decode(sd_vae):
    """Decode to Video File and FrameStream Decode of an image-latent batch are the host's VAE Decode, frame by
    frame (a lossless file, to 8-bit rounding)."""
    url, base = sd_vae
    prompt = load_workflow("image_frames_to_video_file.json")
    prompt["1"]["inputs"]["vae_name"] = SD_VAE_NAME
    prompt["2"]["inputs"]["latent"] = "frames.latent"
    prompt["3"]["inputs"].update(codec=LOSSLESS, filename_prefix="FrameStream/frames_test")
    prompt["4"] = {"class_type": "FrameStreamDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}}
    add_comparison(prompt, {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}}, ["4", 0],
                   "image", "frames")
    assert_success(run_prompt(url, prompt))
    assert_same_as_host(base, "frames", (IMAGE_FRAMES, SIZE, SIZE, 3))
    video = the_video(base, "frames_test")
    assert count_frames(video) == (IMAGE_FRAMES, 8.0)
    assert (read_file_frames(video) - probe(base, "host_frames")).abs().max().item() <= FILE_TOL


def test_image_vae_encodes_frames_like_the_hosts_vae_encode(sd_vae):
    """FrameStream Encode (IMAGE frames) and Encode Video File give the host's VAE Encode: one latent per
    frame, every frame kept (no 1 + 4k rule for image VAEs)."""
    url, base = sd_vae
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": SD_VAE_NAME}},
        "2": {"class_type": "LoadVideo", "inputs": {"file": "input_video.mp4"}},
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
        "4": {"class_type": "FrameStreamEncode", "inputs": {"vae": ["1", 0], "pixels": ["3", 0]}},
        "5": {"class_type": "FrameStreamEncodeVideoFile",
              "inputs": {"vae": ["1", 0], "file": "input_video.mp4", "start_frame": 0, "frame_count": 0, "stride": 1,
                         "width": 0, "height": 0}},
    }
    host_encode = {"class_type": "VAEEncode", "inputs": {"vae": ["1", 0], "pixels": ["3", 0]}}
    add_comparison(prompt, host_encode, ["4", 0], "latent", "encode_frames")
    add_comparison(prompt, host_encode, ["5", 0], "latent", "encode_file")
    assert_success(run_prompt(url, prompt))
    assert_same_as_host(base, "encode_frames", (9, 4, 4, 6))  # input_video.mp4: 9 frames of 48 x 32
    assert_same_as_host(base, "encode_file", (9, 4, 4, 6))


def test_svd_image_to_video_workflow_through_the_image_only_checkpoint_loader(svd):
    """The shipped SVD graph on the test checkpoint, small: the file has one frame per video frame and holds
    FrameStream Decode's frames; those are the host's VAE Decode of the sampler's latent (a clip shorter than
    the decoder's reach is one window: exact). A decode of one frame alone is not (SVD's decoder mixes frames),
    so a per-frame decode could not pass."""
    url, base, log_path = svd
    prompt = load_workflow("svd_image_to_video_to_file.json")
    prompt["1"]["inputs"]["ckpt_name"] = SVD_NAME
    prompt["2"]["inputs"]["image"] = "svd_start_frame.png"
    prompt["3"]["inputs"].update(width=SIZE, height=SIZE, video_frames=SVD_FRAMES)
    prompt["5"]["inputs"]["steps"] = 3
    prompt["6"]["inputs"].update(codec=LOSSLESS, filename_prefix="FrameStream/svd_test")
    prompt["7"] = {"class_type": "FrameStreamDecode", "inputs": {"vae": ["1", 2], "samples": ["5", 0]}}
    add_comparison(prompt, {"class_type": "VAEDecode", "inputs": {"vae": ["1", 2], "samples": ["5", 0]}}, ["7", 0],
                   "image", "svd")
    prompt["11"] = {"class_type": "LatentFromBatch", "inputs": {"samples": ["5", 0], "batch_index": 0, "length": 1}}
    prompt["12"] = {"class_type": "VAEDecode", "inputs": {"vae": ["1", 2], "samples": ["11", 0]}}
    prompt["13"] = {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["12", 0], "name": "host_svd_one"}}
    assert_success(run_prompt(url, prompt))
    assert "missing clip vision" not in log_path.read_text()  # the whole ViT-H was read, none left uninitialised

    ours, host = probe(base, "fs_svd"), probe(base, "host_svd")
    assert ours.shape == host.shape == (SVD_FRAMES, SIZE, SIZE, 3)
    assert (ours - host).abs().max().item() <= TOL
    assert psnr(probe(base, "host_svd_one")[0], host[0]) < SVD_MIN_PSNR_DB - 20
    video = the_video(base, "svd_test")
    assert count_frames(video) == (SVD_FRAMES, 8.0)
    assert (read_file_frames(video) - ours).abs().max().item() <= FILE_TOL


def test_a_long_svd_clip_decodes_in_windows_like_the_hosts_one_call_decode(svd):
    """80 frames of SVD's VAE from the checkpoint: FrameStream decodes windows of 25 frames with 25 of context
    each side, so some touch neither end of the clip, and gathers the temporal GroupNorms' statistics over the
    whole clip; the host decodes all 80 frames in one call. (The workflow's clips fit one window.)"""
    url, base, _ = svd
    size = LONG_SVD_SIZE // 8
    latent = torch.randn(LONG_SVD_FRAMES, 4, size, size, generator=torch.Generator().manual_seed(0))
    _save_latent(base, "svd_long.latent", latent)
    prompt = {
        "1": {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": SVD_NAME}},
        "2": {"class_type": "LoadLatent", "inputs": {"latent": "svd_long.latent"}},
        "3": {"class_type": "FrameStreamDecode", "inputs": {"vae": ["1", 2], "samples": ["2", 0]}},
    }
    add_comparison(prompt, {"class_type": "VAEDecode", "inputs": {"vae": ["1", 2], "samples": ["2", 0]}}, ["3", 0],
                   "image", "svd_long")
    assert_success(run_prompt(url, prompt))
    ours, host = probe(base, "fs_svd_long"), probe(base, "host_svd_long")
    assert ours.shape == host.shape == (LONG_SVD_FRAMES, LONG_SVD_SIZE, LONG_SVD_SIZE, 3)
    assert psnr(ours, host) >= SVD_MIN_PSNR_DB
