"""What a new user meets first on the command line: one-line errors for bad options, --version, help without
markup, options offered only where they act, a demo that reports honestly and finishes with its time, any video
container in and out, fractional frame rates, honest warnings, ordinary file modes and clean stops."""

import os
import signal
import stat
import subprocess
import time

import av
import numpy as np
import pytest
import torch

from framestream import cli
from framestream.vae_core import FrameStreamError, load_vae
from framestream.vae_core.demo import FIXTURE_PATH
from framestream.vae_core.io.files import write_latent

import checkout

VAE = FIXTURE_PATH  # the bundled trained Wan 2.1-layout VAE: small and quick


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])  # returns argparse's own exits (--help, --version, errors) too
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("framestream ") and out.split()[1][0].isdigit()


@pytest.mark.parametrize("argv, pattern", [
    (["decode", "vae.safetensors", "z.latent"], "the following arguments are required: -o/--output"),
    (["decode", "vae.safetensors", "z.latent", "-o", "x.mp4", "--frames-per-step", "two"], "invalid int value"),
    (["encode", "vae.safetensors", "in.mp4", "-o", "z.latent", "--ltx-noise-seed", "3"], "unrecognized arguments"),
    (["transcode"], "invalid choice"),
])
def test_bad_options_are_one_error_line_and_exit_1(capsys, argv, pattern):
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1
    assert lines[0].startswith("framestream") and "error:" in lines[0] and pattern in lines[0]


def test_help_has_no_markup_and_encode_names_both_outputs(capsys):
    _, out, _ = run(["--help"], capsys)
    assert "``" not in out
    _, out, _ = run(["encode", "--help"], capsys)
    assert ".safetensors" in out.split("--output")[1].split("--start")[0]


def test_demo_options_all_have_help(capsys):
    _, out, _ = run(["demo", "--help"], capsys)
    assert "latent frames decoded per step" in out and "auto (CUDA when present)" in out and "no progress" in out


def test_a_demo_frame_one_tile_covers_is_not_reported_as_tiled(capsys):
    code, out, _ = run(["demo", "--size", "64", "--frames", "5", "-q"], capsys)
    assert code == 0
    assert "inf dB" not in out and "nothing was tiled" in out
    assert out.strip().splitlines()[-1].startswith("demo done in ")


# --- files, formats and messages ------------------------------------------------------------------------------


def write_clip(path, codec, frames=9, size=64):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=16)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 20 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("suffix, codec", [(".webm", "libvpx-vp9"), (".avi", "mpeg4")])
def test_any_video_container_encodes(tmp_path, capsys, suffix, codec):
    clip = tmp_path / f"clip{suffix}"
    write_clip(clip, codec)
    code, out, err = run(["encode", VAE, clip, "-o", tmp_path / "z.latent"], capsys)
    assert code == 0, err
    assert "encode 64x64: " in err and "-> 1x16x3x8x8" in err  # the plan, before the work
    assert (tmp_path / "z.latent").exists()


def test_decode_writes_vp9_webm_and_refuses_lossless_webm(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 3, 8, 8))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.webm", "-q"], capsys)
    assert code == 0, err
    with av.open(str(tmp_path / "x.webm")) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
        assert sum(1 for _ in container.decode(video=0)) == 9
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "y.webm", "--lossless"], capsys)
    assert code == 1 and "which .webm cannot hold" in err and not (tmp_path / "y.webm").exists()


def test_fractional_frame_rates(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 8, 8))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "--fps", "30000/1001", "-q"],
                       capsys)
    assert code == 0, err
    with av.open(str(tmp_path / "x.mp4")) as container:
        assert container.streams.video[0].average_rate == av.utils.Fraction(30000, 1001) if hasattr(av, "utils") \
            else float(container.streams.video[0].average_rate) == pytest.approx(30000 / 1001)


@pytest.mark.parametrize("argv, pattern", [(["--max-memory", "-1"], "--max-memory must be more than 0 GB"),
                                           (["--max-memory", "0.00001"], "give at least"),
                                           (["--fps", "0"], "expected a positive frame rate")])
def test_impossible_settings_are_refused_before_any_work(tmp_path, capsys, argv, pattern):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 8, 8))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", *argv], capsys)
    assert code == 1 and pattern in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == ["z.latent"]


def test_a_small_tile_alone_works_and_says_it_is_slow(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 16, 16))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "--tile", "64"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("framestream: warning: tiles of 64 px overlapping by 16 px")
    assert "2x2 tiles of 64 px" in err or "3x3 tiles of 64 px" in err


def test_warnings_are_one_clean_line(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, "libx264", frames=6)
    code, _, err = run(["encode", VAE, clip, "-o", tmp_path / "z.latent", "-q"], capsys)
    assert code == 0
    assert err.strip().splitlines() == [
        "framestream: warning: encoding 5 frames of 64x64 px out of 6 of 64x64: the VAE takes 1 + 4k frames of "
        "sides that are multiples of 8 px; the rest is left out"]


def test_outputs_honour_the_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        for name in ("z.latent", "z.safetensors"):
            write_latent(str(tmp_path / name), torch.randn(1, 16, 2, 8, 8))
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
    finally:
        os.umask(old)


def test_a_latent_read_two_ways_names_both():
    vae = load_vae(VAE)
    from framestream.vae_core import decode

    with pytest.raises(FrameStreamError, match=r"read as one video \[C, T, H, W\] it has 48 channels, read as images"):
        decode(vae, torch.randn(48, 16, 4, 4))


def test_an_integer_latent_is_refused_by_name(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"latent_tensor": torch.ones(1, 16, 2, 4, 4, dtype=torch.int32),
               "latent_format_version_0": torch.tensor([])}, tmp_path / "z.latent")
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "o.mp4"], capsys)
    assert code == 1 and "holds a torch.int32 tensor; a latent is floating point" in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_blames_the_device_not_the_file():
    with pytest.raises(FrameStreamError, match="sees no CUDA GPU; load with device='cpu'"):
        load_vae(VAE, device="cuda")


def test_sigterm_mid_decode_leaves_nothing(tmp_path):
    """A decode long enough to be stopped while its hidden temporary file exists."""
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 200, 16, 16))
    process = subprocess.Popen([*checkout.COMMAND, "decode", VAE, str(tmp_path / "z.latent"), "-o",
                                str(tmp_path / "x.mp4"), "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any(name.startswith(".framestream-") for name in os.listdir(tmp_path)):
        assert process.poll() is None and time.time() < deadline, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert "interrupted; nothing was written" in process.stderr.read()
    assert os.listdir(tmp_path) == ["z.latent"]


def test_demo_at_a_size_the_vae_crops(capsys):
    code, out, _ = run(["demo", "--size", "100", "--frames", "5", "-q"], capsys)
    assert code == 0 and "reconstruction PSNR" in out and "demo done in" in out
