"""What a new user meets first on the command line: one-line errors for bad options, --version, help without
markup, options offered only where they act, a demo that reports honestly and finishes with its time, any video
container in and out, fractional frame rates, honest warnings, ordinary file modes and clean stops."""

import os
import signal
import stat
import subprocess
import sys
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


# --- the second new user's list (issue 31): each bad input one line, nothing written or lost ------------------


def one_error(code, err, pattern):
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("framestream: error:") and pattern in lines[0], err


def test_an_unreadable_vae_or_latent_is_named_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    """The tests run as root, which reads anything: the permission check is what is exercised."""
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 8, 8))
    real_access = os.access
    for locked in (str(VAE), str(tmp_path / "z.latent")):
        monkeypatch.setattr(os, "access", lambda path, mode, locked=locked: False if str(path) == locked and
                            mode == os.R_OK else real_access(path, mode))
        code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4"], capsys)
        one_error(code, err, f"cannot read {locked}: permission denied")
    assert os.listdir(tmp_path) == ["z.latent"]


def test_a_folder_given_as_a_file_is_called_a_folder(tmp_path, capsys):
    code, _, err = run(["decode", VAE, tmp_path, "-o", tmp_path / "x.mp4"], capsys)
    one_error(code, err, f"{tmp_path} is a folder; give the safetensors file itself")
    code, _, err = run(["decode", VAE, tmp_path / "nothing.latent", "-o", tmp_path], capsys)
    one_error(code, err, "the output (OUT) must end in")


def test_a_budget_too_small_for_the_default_overlap_takes_smaller_tiles_with_a_narrower_one(tmp_path, capsys):
    """128 px frames in a budget that tiles of at least two 64 px overlaps (136 px) do not fit, but 64 px tiles
    overlapping by 16 px do (as --tile 64 would): the plan takes them and says so."""
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 16, 16))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "--max-memory", "0.07"],
                       capsys)
    assert code == 0, err
    assert " tiles of " in err and "overlapping by 16 px" in err


def test_fixed_tiles_or_the_whole_frame_over_a_budget_are_refused(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 16, 16))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "--tile", "none",
                        "--max-memory", "0.01"], capsys)
    one_error(code, err, "the whole frame (no tiles) need")
    assert "or let tiles be chosen to fit" in err and os.listdir(tmp_path) == ["z.latent"]


def test_a_refused_tile_says_only_why(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 8, 8))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "--tile", "3"], capsys)
    one_error(code, err, "tile size must be at least 8 px for the Wan 2.1 VAE, got 3")
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "--tile", "64",
                        "--overlap", "1000"], capsys)
    one_error(code, err, "tile overlap (1000 px) must be smaller than the tile (64 px); try an overlap of 16 px")


def test_sizes_read_width_by_height_everywhere(tmp_path):
    from framestream.vae_core import encode

    with pytest.warns(UserWarning, match=r"encoding 9 frames of 96x56 px out of 9 of 100x60"):
        encode(load_vae(VAE), torch.rand(9, 60, 100, 3))
    with pytest.warns(UserWarning, match=r"encoding 1 frame of 96x56 px out of 2 of 100x60"):
        encode(load_vae(VAE), torch.rand(2, 60, 100, 3))


def test_the_demo_takes_width_by_height_and_encode_refuses_video_options_for_frames(tmp_path, capsys):
    code, out, err = run(["demo", "--size", "64x48", "--frames", "5", "-q"], capsys)
    assert code == 0 and "5-frame 64x48 clip" in out, err
    from safetensors.torch import save_file

    save_file({"frames": torch.rand(5, 32, 32, 3)}, tmp_path / "f.safetensors")
    code, _, err = run(["encode", VAE, tmp_path / "f.safetensors", "-o", tmp_path / "z.latent", "--size", "16x16"],
                       capsys)
    one_error(code, err, "--size apply to reading a video file")
    assert os.listdir(tmp_path) == ["f.safetensors"]


def test_plan_takes_what_decode_takes(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 8, 8))
    for output in ("x.safetensors", "x.mp4"):
        code, out, err = run(["plan", VAE, tmp_path / "z.latent", "-o", tmp_path / output], capsys)
        assert code == 0 and "estimated peak" in out, err
    code, _, err = run(["plan", VAE, "--frames", "33"], capsys)
    one_error(code, err, "--frames needs --size WIDTHxHEIGHT too")
    code, _, err = run(["plan", VAE, "--frames", "33", "--size", "0x0"], capsys)
    one_error(code, err, "both at least 1")
    assert os.listdir(tmp_path) == ["z.latent"]


def test_an_unknown_option_points_to_its_subcommands_help(capsys):
    code, _, err = run(["decode", VAE, "z.latent", "-o", "x.mp4", "--bogus"], capsys)
    one_error(code, err, "unrecognized arguments: --bogus (see: framestream decode --help)")


def test_absurd_rates_rgba_frames_and_existing_outputs(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 8, 8))
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "--fps", "1e9"], capsys)
    one_error(code, err, "a positive frame rate of at most 1000")
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "z.latent"], capsys)
    one_error(code, err, "the output (OUT) must end in")
    (tmp_path / "x.mp4").write_bytes(b"mine")
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "-q"], capsys)
    one_error(code, err, "x.mp4 exists; pass --overwrite to replace it")
    os.chmod(tmp_path / "x.mp4", 0o444)
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "-q", "--overwrite"], capsys)
    if os.geteuid() != 0:  # root may write anything: the refusal reads the file's mode through os.access
        one_error(code, err, "exists and is read-only")
        assert (tmp_path / "x.mp4").read_bytes() == b"mine"
    os.chmod(tmp_path / "x.mp4", 0o644)
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "-q", "--overwrite"], capsys)
    assert code == 0 and (tmp_path / "x.mp4").read_bytes() != b"mine", err
    from framestream.vae_core import encode

    vae, frames = load_vae(VAE), torch.rand(5, 32, 32, 4, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="4 channels \\(RGBA\\): the 4th, alpha, is left out"):
        rgba = encode(vae, frames)
    assert torch.equal(rgba, encode(vae, frames[..., :3]))


def test_counts_read_as_sentences():
    from framestream.vae_core import decode

    z = torch.randn(1, 16, 2, 4, 4)
    z[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(FrameStreamError, match="latent contains 1 NaN/inf value;"):
        decode(load_vae(VAE), z)


def test_under_torchrun_only_rank_0_warns(tmp_path, capsys, monkeypatch):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 16, 16))
    said = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        code, _, err = run(["plan", VAE, tmp_path / "z.latent", "--tile", "64"], capsys)
        said[rank] = [line for line in err.splitlines() if "warning" in line]
        assert code == 0, err
    assert len(said["0"]) == 1 and said["1"] == []


def test_a_killed_runs_hidden_temporary_is_cleaned_by_the_next_run_into_that_folder(tmp_path, capsys):
    write_latent(str(tmp_path / "z.latent"), torch.randn(1, 16, 2, 8, 8))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process id that no longer runs
    stale, live = tmp_path / f".framestream-{dead.pid}-abc.mp4", tmp_path / f".framestream-{os.getpid()}-def.mp4"
    stale.write_bytes(b"")
    live.write_bytes(b"")
    code, _, err = run(["decode", VAE, tmp_path / "z.latent", "-o", tmp_path / "x.mp4", "-q"], capsys)
    assert code == 0, err
    assert not stale.exists() and live.exists()


def test_the_command_chooses_a_short_openmp_spin_on_a_busy_machine_unless_the_user_chose():
    """Set before torch loads (the runtime reads it once): threads spinning the default while make a decode
    several times slower beside another job, a short spin costs on a quiet machine (benchmarks/wait_policy.py).
    GNU OpenMP spins 1000 turns; Intel's, which counts milliseconds, sleeps at once."""
    from framestream import launch

    environ = {}
    launch.choose_waiting(environ, busy=True)
    assert environ == {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
    environ = {}
    launch.choose_waiting(environ, busy=False)  # quiet: torch's own spin
    assert environ == {}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "300000"},
                   {"KMP_BLOCKTIME": "200"}):
        for busy in (True, False):
            environ = dict(chosen)
            launch.choose_waiting(environ, busy=busy)
            assert environ == chosen
    import tomllib

    with open(os.path.join(checkout.ROOT, "pyproject.toml"), "rb") as f:  # both ways in start there
        assert tomllib.load(f)["project"]["scripts"]["framestream"] == "framestream.launch:main"
    with open(os.path.join(checkout.ROOT, "__main__.py")) as f:
        assert "from .launch import main" in f.read()


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_a_busy_loop_beside_the_command_counts_as_a_busy_machine():
    from framestream import launch

    cores = len(os.sched_getaffinity(0))
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # running
        seen = launch.cores_in_use(0.5)
    finally:
        loop.kill()
        loop.wait()
    assert launch.BUSY_CORES <= seen <= cores + 0.25  # one core's worth at least, never more than there are
