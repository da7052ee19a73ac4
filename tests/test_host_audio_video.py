"""Audio and video together in a real ComfyUI on CPU (runs only with ``COMFYUI_DIR``): nested audio+video LATENTs
as the host's own nodes make them, the sound written into the file by the shipped workflow, and the sound Encode
Video File returns, each compared with the host's own nodes."""

from __future__ import annotations

import json
import shutil
import urllib.request
import wave

import pytest
import torch

from helpers import (FILE_TOL, TOL, add_comparison, assert_fails_with, assert_same_as_host, assert_success,
                     count_frames, load_workflow, needs_host, probe, read_file_frames, run_prompt, save_latent_input,
                     tone)

from framestream.vae_core.io.audio import Sound, read_sound
from framestream.vae_core.io.files import read_metadata
from framestream.vae_core.io.video import VideoFileSink

pytestmark = needs_host

SOUND_SECONDS = 1.3  # longer than the 9-frame test clip (0.56 s at 16 fps): the track is the whole sound


@pytest.fixture(scope="module")
def av_inputs(comfy):
    """A .wav for Load Audio, a video with an AAC track, and an audio latent part, in the server's input folder."""
    url, base, _ = comfy
    samples = (tone(SOUND_SECONDS) * 32767).round().to(torch.int16)
    with wave.open(str(base / "input" / "sound.wav"), "wb") as f:
        f.setnchannels(2), f.setsampwidth(2), f.setframerate(44100)
        f.writeframes(samples.t().contiguous().numpy().tobytes())
    sink = VideoFileSink(base / "input" / "talk.mp4", 16, sound=Sound(tone(0.9, seed=1), 44100))
    sink.start((1, 9, 32, 48, 3))
    sink.write(0, 0, torch.rand(9, 32, 48, 3, generator=torch.Generator().manual_seed(2)))
    sink.result()
    save_latent_input(base, "audio_part.latent", torch.randn(1, 8, 3, 16, generator=torch.Generator().manual_seed(3)))
    return url, base, samples.float() / 32768


def _host_has(url: str, node: str) -> bool:
    with urllib.request.urlopen(f"{url}/object_info/{node}") as r:
        return node in json.load(r)


def test_decode_nodes_take_the_hosts_nested_audio_video_latent(av_inputs):
    """The host's Concat AV Latent (LTX-2 AV, MiniMax H3) makes a NestedTensor LATENT: both decode nodes decode its
    video part, as the host's VAE Decode does."""
    url, base, _ = av_inputs
    if not _host_has(url, "LTXVConcatAVLatent"):
        pytest.skip("this host has no audio+video latents (nested LATENTs came after 0.3.64)")
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "2": {"class_type": "LoadLatent", "inputs": {"latent": "wan_video.latent"}},
        "3": {"class_type": "LoadLatent", "inputs": {"latent": "audio_part.latent"}},
        "4": {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": ["2", 0], "audio_latent": ["3", 0]}},
        "5": {"class_type": "FrameStreamDecode", "inputs": {"vae": ["1", 0], "samples": ["4", 0]}},
        "6": {"class_type": "FrameStreamDecodeToVideo",
              "inputs": {"vae": ["1", 0], "samples": ["4", 0], "fps": 16.0, "filename_prefix": "FrameStream/nested",
                         "codec": "h264 lossless (RGB)", "crf": 19}},
    }
    add_comparison(prompt, {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["4", 0]}}, ["5", 0],
                   "image", "nested")
    assert_success(run_prompt(url, prompt))
    host = assert_same_as_host(base, "nested", (9, 24, 32, 3))
    [video] = list((base / "output" / "FrameStream").glob("nested_*.mp4"))
    assert (read_file_frames(video) - host).abs().max().item() <= FILE_TOL


def test_a_minimax_h3_latent_for_a_wan_vae_is_refused_naming_its_video_part(av_inputs):
    url, _, _ = av_inputs
    if not _host_has(url, "EmptyMiniMaxH3LatentAV"):
        pytest.skip("this host has no MiniMax H3 (added in 2026)")
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "2": {"class_type": "EmptyMiniMaxH3LatentAV", "inputs": {"width": 32, "height": 32, "length": 5}},
        "3": {"class_type": "FrameStreamDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}},
        "4": {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["3", 0], "name": "never"}},
    }
    assert_fails_with(url, prompt, "this audio+video LATENT's video part does not fit: latent has 24 channels but "
                                   "the Wan 2.1 VAE expects 16")


def test_the_sound_workflow_writes_the_whole_sound_beside_vae_decodes_frames(av_inputs):
    url, base, sound = av_inputs
    prompt = load_workflow("wan_decode_with_sound_to_file.json")
    prompt["4"]["inputs"].update(codec="h264 lossless (RGB)", save_latent="on")  # exact 8-bit frames to compare
    prompt["5"] = {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}}
    prompt["6"] = {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["5", 0], "name": "host_frames"}}
    assert_success(run_prompt(url, prompt))
    [video] = list((base / "output" / "FrameStream").glob("with_sound_*.mp4"))
    assert count_frames(video) == (9, 16.0)
    assert (read_file_frames(video) - probe(base, "host_frames")).abs().max().item() <= FILE_TOL
    back = read_sound(str(video))
    assert back.rate == 44100 and back.channels == 2
    assert abs(back.samples.shape[1] - sound.shape[1]) < 1024  # the whole sound, to one AAC frame
    n = sound.shape[1]
    middle = slice(n // 8, n - n // 8)
    error = (back.samples[:, middle] - sound[:, middle]).pow(2).mean() / sound[:, middle].pow(2).mean()
    assert 10 * torch.log10(1 / error) > 15  # AAC keeps the sines

    # the latent kept beside the video: the host's Load Latent reads it back, with the prompt in its metadata
    kept = video.with_suffix(".latent")
    assert json.loads(read_metadata(str(kept))["prompt"])["4"]["class_type"] == "FrameStreamDecodeToVideo"
    shutil.copy(kept, base / "input" / "kept.latent")
    reload = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "kept.latent"}},
              "2": {"class_type": "FrameStreamTestProbeLatent", "inputs": {"samples": ["1", 0], "name": "kept"}},
              "3": {"class_type": "LoadLatent", "inputs": {"latent": "wan_video.latent"}},
              "4": {"class_type": "FrameStreamTestProbeLatent", "inputs": {"samples": ["3", 0], "name": "given"}}}
    assert_success(run_prompt(url, reload))
    assert torch.equal(probe(base, "kept"), probe(base, "given"))


def test_encode_video_file_returns_the_sound_load_video_gives(av_inputs):
    url, base, _ = av_inputs
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "2": {"class_type": "FrameStreamEncodeVideoFile",
              "inputs": {"vae": ["1", 0], "file": "talk.mp4", "start_frame": 0, "frame_count": 0, "stride": 1,
                         "width": 0, "height": 0}},
        "3": {"class_type": "LoadVideo", "inputs": {"file": "talk.mp4"}},
        "4": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 0]}},
        "5": {"class_type": "FrameStreamTestProbeAudio", "inputs": {"audio": ["2", 1], "name": "fs_sound"}},
        "6": {"class_type": "FrameStreamTestProbeAudio", "inputs": {"audio": ["4", 1], "name": "host_sound"}},
        "7": {"class_type": "FrameStreamEncodeVideoFile",
              "inputs": {"vae": ["1", 0], "file": "input_video.mp4", "start_frame": 0, "frame_count": 0, "stride": 1,
                         "width": 0, "height": 0}},
        "8": {"class_type": "FrameStreamTestProbeAudio", "inputs": {"audio": ["7", 1], "name": "fs_silence"}},
    }
    add_comparison(prompt, {"class_type": "VAEEncode", "inputs": {"vae": ["1", 0], "pixels": ["4", 0]}}, ["2", 0],
                   "latent", "talk")
    assert_success(run_prompt(url, prompt))
    ours, theirs = probe(base, "fs_sound"), probe(base, "host_sound")
    assert ours.shape == theirs.shape and ours.shape[:2] == (1, 2) and ours.shape[2] > 0.85 * 44100
    assert (ours - theirs).abs().max().item() <= TOL
    assert probe(base, "fs_sound", "rate").item() == probe(base, "host_sound", "rate").item() == 44100
    assert probe(base, "fs_silence").shape == (1, 1, 0)  # a file without sound: an empty one
    assert_same_as_host(base, "talk", (1, 16, 3, 4, 6))
