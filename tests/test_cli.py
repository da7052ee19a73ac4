"""The ``framestream`` command: the contract end-to-end use relies on, and its one-line errors."""

import os
import shutil
import subprocess
import sys
import wave

import pytest
import torch
from safetensors.torch import load_file, save_file

from framestream import cli
from framestream.vae_core.streaming import engine
from framestream.vae_core.demo import moving_shapes
from framestream.vae_core.io.video import VideoFileSink
from framestream.vae_core.io.audio import read_sound
from framestream.vae_core.io.video_reader import EIGHT_BIT, FULL_PRECISION, probe_video, read_video
from framestream.vae_core.streaming.memory import plan_decode
from framestream.vae_core.streaming.settings import Settings

from helpers import tone
from oracle import SMALL_091_NOISE, diffusers_decode_raw, diffusers_ltx


@pytest.fixture(scope="module")
def files(tmp_path_factory, wan21_pair):
    ref, ours = wan21_pair
    folder = tmp_path_factory.mktemp("cli")
    save_file(ref.state_dict(), folder / "wan21_diffusers.safetensors")
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, folder / "wan21.safetensors")
    z = torch.randn(1, 16, 3, 2, 3, generator=torch.Generator().manual_seed(0))
    save_file({"latent_tensor": z, "latent_format_version_0": torch.tensor([])}, folder / "clip.latent")
    save_file({"x": z[0]}, folder / "plain.safetensors")
    return folder, z


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern):
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("framestream: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert pattern in lines[0], lines[0]


def test_decode_writes_what_the_host_vaedecode_returns(files, capsys, wan21_pair):
    folder, z = files
    code, out, err = run(["decode", folder / "wan21_diffusers.safetensors", folder / "clip.latent",
                          "-o", folder / "frames.safetensors", "--frames-per-step", "2"], capsys)
    assert code == 0, err
    frames = load_file(folder / "frames.safetensors")["frames"]
    expected = ((diffusers_decode_raw(wan21_pair[0], z) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    assert frames.shape == (9, 16, 24, 3) and frames.dtype == torch.float32
    assert (frames - expected).abs().max() <= 1e-4
    assert "decoded (1, 16, 3, 2, 3) -> 9 frames 24x16" in out and "peak RAM" in out
    assert "2/2 steps" in err  # progress on stderr


def test_decode_accepts_a_plain_one_tensor_safetensors(files, capsys, wan21_pair):
    folder, z = files
    code, _, err = run(["decode", folder / "wan21.safetensors", folder / "plain.safetensors", "-o",
                        folder / "plain_frames.safetensors", "-q"], capsys)
    assert code == 0 and err == ""
    assert torch.equal(load_file(folder / "plain_frames.safetensors")["frames"], engine.decode(wan21_pair[1], z))


def test_encode_writes_a_latent_the_host_loads(files, capsys, wan21_pair):
    folder, _ = files
    frames = torch.rand(9, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    save_file({"frames": frames}, folder / "video.safetensors")
    code, out, err = run(["encode", folder / "wan21.safetensors", folder / "video.safetensors",
                          "-o", folder / "out.latent"], capsys)
    assert code == 0, err
    saved = load_file(folder / "out.latent")
    assert set(saved) == {"latent_tensor", "latent_format_version_0"}  # Load Latent then applies no rescale
    assert torch.equal(saved["latent_tensor"], engine.encode(wan21_pair[1], frames))


def test_demo_runs_and_reports(capsys, tmp_path):
    code, out, err = run(["demo", "--frames", "5", "--size", "32", "-o", tmp_path / "demo.safetensors"], capsys)
    assert code == 0, err
    assert "streamed vs whole-clip decode: max |difference|" in out and "peak RAM" in out
    assert load_file(tmp_path / "demo.safetensors")["frames"].shape == (5, 32, 32, 3)


# --- bad input: exit code 1, one line, nothing written ------------------------------------------------------------


def bad(folder, name, tensors):
    save_file(tensors, folder / name)
    return folder / name


def test_bad_inputs_each_give_one_line_and_write_nothing(files, capsys, tmp_path):
    folder, z = files
    from diffusers import AutoencoderKL

    image_vae = bad(tmp_path, "sd_vae.safetensors",
                    AutoencoderKL(block_out_channels=(64,), latent_channels=4).state_dict())
    wrong_channels = bad(tmp_path, "flux.latent", {"latent_tensor": torch.randn(1, 4, 3, 2, 2),
                                                   "latent_format_version_0": torch.tensor([])})
    nan = z.clone()
    nan[0, 0, 0, 0, 0] = float("nan")
    nan_latent = bad(tmp_path, "nan.latent", {"latent_tensor": nan, "latent_format_version_0": torch.tensor([])})
    two = bad(tmp_path, "two.safetensors", {"a": z, "b": z.clone()})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((folder / "wan21.safetensors").read_bytes()[:5000])
    pickle = tmp_path / "vae.pt"
    torch.save({"a": torch.ones(1)}, pickle)
    vae, latent = folder / "wan21.safetensors", folder / "clip.latent"
    cases = [
        (["decode", image_vae, latent], "a video latent [B, C, T, H, W]; the image VAE"),  # an image VAE, Wan's latent
        (["decode", vae, wrong_channels], "latent has 4 channels but the Wan 2.1 VAE expects 16"),
        (["decode", vae, nan_latent], "NaN/inf"),
        (["decode", vae, two], "holds 2 tensors"),
        (["decode", truncated, latent], "truncated or corrupt"),
        (["decode", pickle, latent], "pickle"),
        (["decode", tmp_path / "missing.safetensors", latent], "file not found"),
        (["decode", vae, tmp_path / "missing.latent"], "file not found"),
        (["decode", vae, latent, "--frames-per-step", "0"], "frames_per_step must be at least 1"),
        (["decode", vae, latent, "--device", "cuda:7"] if not torch.cuda.is_available() else
         ["decode", vae, latent, "--device", "nonsense"], "device"),
    ]
    for argv, message in cases:
        out_path = tmp_path / "out.safetensors"
        code, _, err = run([*argv, "-o", out_path], capsys)
        assert_one_line_error(code, err, message)
        assert not out_path.exists(), argv
    code, _, err = run(["decode", vae, latent, "-o", tmp_path / "out.gif"], capsys)
    assert_one_line_error(code, err, "must end in .safetensors or .mp4")
    for options, message in [(["--fps", "0"], "fps"), (["--crf", "60"], "crf"), (["--overlap", "-8"], "overlap"),
                             (["--tile", "4"], "tile size must be at least 8"),
                             (["--tile", "32", "--overlap", "32"], "smaller than the tile")]:
        code, _, err = run(["decode", vae, latent, "-o", tmp_path / "out.mp4", *options], capsys)
        assert_one_line_error(code, err, message)
    code, _, err = run(["encode", vae, latent, "-o", tmp_path / "out.latent"], capsys)
    assert_one_line_error(code, err, "no 'frames' tensor")
    for name, frames, message in [("empty", torch.rand(0, 16, 16, 3), "the frames are empty"),
                                  ("bytes", torch.randint(0, 255, (5, 16, 16, 3), dtype=torch.uint8), "dtype torch.uint8"),
                                  ("levels", torch.rand(5, 16, 16, 3) * 255, "0-255 values need / 255")]:
        video = bad(tmp_path, f"{name}.safetensors", {"frames": frames})
        code, _, err = run(["encode", vae, video, "-o", tmp_path / "out.latent"], capsys)
        assert_one_line_error(code, err, message)
    code, _, err = run(["decode", vae, latent, "-o", tmp_path / "no" / "such" / "out.safetensors"], capsys)
    assert_one_line_error(code, err, "output folder does not exist")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".framestream", "out"))) == []


def test_installed_command_reports_errors_cleanly(tmp_path):
    """The console script from ``pip install .`` (CI installs it): exit code and a single line, no traceback."""
    command = shutil.which("framestream")
    if command is None:
        pytest.skip("framestream is not installed on PATH (CI installs it with pip install .)")
    result = subprocess.run([command, "decode", str(tmp_path / "none.safetensors"), str(tmp_path / "none.latent"),
                             "-o", str(tmp_path / "o.safetensors")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("framestream: error: file not found") and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "o.safetensors")
    help_text = subprocess.run([sys.executable, "-m", "framestream", "--help"], capture_output=True, text=True,
                               timeout=120, cwd=str(tmp_path))
    assert help_text.returncode == 0 and "decode" in help_text.stdout


def test_decode_to_mp4_streams_every_frame_at_the_given_rate(files, capsys, tmp_path, wan21_pair):
    folder, z = files
    code, out, err = run(["decode", folder / "wan21.safetensors", folder / "clip.latent", "-o", tmp_path / "clip.mp4",
                          "--fps", "24", "--lossless"], capsys)
    assert code == 0, err
    info = probe_video(tmp_path / "clip.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (9, 24.0, 24, 16)
    expected = engine.decode(wan21_pair[1], z)
    decoded = torch.cat(list(read_video(tmp_path / "clip.mp4", reading=EIGHT_BIT)))  # the stored 8-bit values
    assert (decoded - expected).abs().max() <= 0.5 / 255 + 1e-6  # lossless: only the 8-bit rounding
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


@pytest.mark.filterwarnings("ignore:encoding .* the rest is left out")  # the file has frames beyond 1 + 4k
def test_encode_of_a_video_file_equals_encoding_its_frames(capsys, tmp_path, wan21_pair):
    vae_path = tmp_path / "wan21.safetensors"
    save_file({k: v.contiguous() for k, v in wan21_pair[1].state_dict().items()}, vae_path)
    clip = moving_shapes(13, 32, 48)
    sink = VideoFileSink(tmp_path / "clip.mkv", 16, lossless=True)
    sink.start((1, *clip.shape))
    sink.write(0, 0, clip)
    sink.result()
    code, _, err = run(["encode", vae_path, tmp_path / "clip.mkv", "-o", tmp_path / "clip.latent", "--start", "2",
                        "--stride", "2", "--tile", "none"], capsys)
    assert code == 0, err
    frames = torch.cat(list(read_video(tmp_path / "clip.mkv")))[2::2]
    assert frames.shape[0] == 6
    expected = engine.encode(wan21_pair[1], frames)
    assert torch.equal(load_file(tmp_path / "clip.latent")["latent_tensor"], expected)


def test_ltx_decode_reads_normalised_latents_at_the_pipelines_timestep(capsys, tmp_path):
    """An LTX-Video 0.9.1 latent as the host saves it (normalised by the checkpoint's statistics) decodes at
    timestep 0.05 with the decoder noise of seed 0, as diffusers' VAE does on the raw latent."""
    ref = diffusers_ltx(SMALL_091_NOISE, seed=21)
    gen = torch.Generator().manual_seed(22)
    ref.latents_mean.copy_(0.2 * torch.randn(128, generator=gen))
    ref.latents_std.copy_(torch.rand(128, generator=gen) + 0.5)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "ltx.safetensors")
    raw = torch.randn(1, 128, 2, 2, 2, generator=gen)
    normalised = (raw - ref.latents_mean.view(1, -1, 1, 1, 1)) / ref.latents_std.view(1, -1, 1, 1, 1)
    save_file({"x": normalised[0]}, tmp_path / "normalised.safetensors")
    save_file({"x": raw[0]}, tmp_path / "raw.safetensors")
    torch.manual_seed(3)
    with torch.no_grad():
        expected = ((ref.decode(raw, temb=torch.tensor([0.05])).sample + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    for latent, extra in (("normalised", []), ("raw", ["--ltx-latents", "raw"])):
        code, _, err = run(["decode", tmp_path / "ltx.safetensors", tmp_path / f"{latent}.safetensors", "-o",
                            tmp_path / f"{latent}_frames.safetensors", "--ltx-noise-seed", "3", *extra], capsys)
        assert code == 0, err
        frames = load_file(tmp_path / f"{latent}_frames.safetensors")["frames"]
        assert frames.shape == expected.shape and (frames - expected).abs().max().item() <= 1e-4
    code, _, err = run(["decode", tmp_path / "ltx.safetensors", tmp_path / "normalised.safetensors", "-o",
                        tmp_path / "t.safetensors", "--ltx-noise-seed", "3", "--decode-timestep", "0.5"], capsys)
    frames = load_file(tmp_path / "t.safetensors")["frames"]
    assert code == 0 and (frames - expected).abs().max().item() > 1e-2  # the timestep is used


def test_plan_prints_what_a_decode_would_hold_without_running_it(files, capsys, wan21_pair):
    folder, z = files
    vae = wan21_pair[1]
    code, out, err = run(["plan", folder / "wan21.safetensors", folder / "clip.latent"], capsys)
    assert code == 0, err
    expected = plan_decode(vae, z.shape, Settings(tile="auto")).describe(vae.spatial_ratio)
    assert out.strip() == expected and expected.endswith("-> 9x16x24x3")

    # a video size instead of a latent, for a GPU this machine need not have, under a budget
    code, out, err = run(["plan", folder / "wan21.safetensors", "--frames", "81", "--size", "1280x720",
                          "--device", "cuda", "--max-memory", "0.5"], capsys)
    assert code == 0, err
    assert "21 steps of up to 1 latent frames" in out and "tiles of" in out and "-> 81x720x1280x3" in out
    assert float(out.split("estimated peak ")[1].split(" MiB")[0]) <= 0.9 * 512

    # writing a video file: its encoder's memory is in the plan, and nothing is written
    code, out, err = run(["plan", folder / "wan21.safetensors", folder / "clip.latent", "--output",
                          folder / "planned.mp4"], capsys)
    assert code == 0, err
    assert "(the video encoder: " in out and not (folder / "planned.mp4").exists()
    assert float(out.split("estimated peak ")[1].split(" MiB")[0]) > float(expected.split("estimated peak ")[1].split(" MiB")[0])


@pytest.mark.parametrize("extra, message", [
    (["--frames", "81", "--size", "1280x720", "--max-memory", "0.001"],
     "a memory budget of 0.001 GB is too small for this decode of 1280x720 px: even tiles of"),
    (["--frames", "81", "--size", "1280x720", "--device", "cuda"], "give --max-memory to plan for one"),
    ([], "give a LATENT file, or --frames and --size"),
    (["--frames", "9", "--size", "1280"], "--size must be WIDTHxHEIGHT"),
])
def test_plan_refuses_what_cannot_be_planned(files, capsys, extra, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder, _ = files
    code, _, err = run(["plan", folder / "wan21.safetensors", *extra], capsys)
    assert_one_line_error(code, err, message)


class _WriteLog:
    """A stderr that records each write call: a line split over two writes can interleave with another rank's."""

    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


@pytest.mark.parametrize("argv", [["decode", "missing.safetensors", "missing.latent", "-o", "o.safetensors"],  # our error
                                  ["decode", "--no-such-option"]])  # argparse's
def test_each_error_line_reaches_stderr_in_one_write(tmp_path, monkeypatch, argv):
    log = _WriteLog()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stderr", log)
    assert cli.main(argv) == 1
    errors = [text for text in log.writes if "framestream: error:" in text]
    assert len(errors) == 1 and errors[0].startswith("framestream: error:") and errors[0].endswith("\n")
    assert errors[0].count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_decode_puts_a_sound_file_into_the_video(files, capsys, tmp_path, wan21_pair):
    """``--audio`` takes any file PyAV reads (a .wav here, and another video's track); the frames are unchanged."""
    folder, z = files
    samples = (tone(1.2, rate=22050) * 32767).round().to(torch.int16)
    with wave.open(str(tmp_path / "voice.wav"), "wb") as f:
        f.setnchannels(2), f.setsampwidth(2), f.setframerate(22050)
        f.writeframes(samples.t().contiguous().numpy().tobytes())
    for sound, out in ((tmp_path / "voice.wav", tmp_path / "a.mkv"), (tmp_path / "a.mkv", tmp_path / "b.mp4")):
        code, _, err = run(["decode", folder / "wan21.safetensors", folder / "clip.latent", "-o", out, "--lossless",
                            "--audio", sound, "-q"], capsys)
        assert code == 0, err
        back = read_sound(out)
        assert back.rate == 22050 and abs(back.seconds - 1.2) < 0.05
    frames = torch.cat(list(read_video(tmp_path / "b.mp4", reading=EIGHT_BIT)))
    assert torch.equal(frames, (engine.decode(wan21_pair[1], z) * 255 + 0.5).floor() / 255)


@pytest.mark.parametrize("make, output, message", [
    (lambda p: p.write_text("not a sound\n" * 40), "out.mp4", "notes.wav is not a readable audio file"),
    (None, "out.mp4", "audio file not found"),
    (lambda p: p.write_text("x"), "out.safetensors", "--audio goes into a video file; "),
])
def test_a_bad_audio_option_writes_nothing(files, capsys, tmp_path, make, output, message):
    folder, _ = files
    sound = tmp_path / "notes.wav"
    if make is not None:
        make(sound)
    code, _, err = run(["decode", folder / "wan21.safetensors", folder / "clip.latent", "-o", tmp_path / output,
                        "--audio", sound], capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / output).exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_encode_reads_at_full_precision_unless_told_eight_bit(capsys, tmp_path, wan21_pair):
    vae_path = tmp_path / "wan21.safetensors"
    save_file({k: v.contiguous() for k, v in wan21_pair[1].state_dict().items()}, vae_path)
    sink = VideoFileSink(tmp_path / "clip.mp4", 16)
    sink.start((1, 9, 32, 64, 3))
    sink.write(0, 0, moving_shapes(9, 32, 64))
    sink.result()
    for option, reading in (([], FULL_PRECISION), (["--eight-bit", "--overwrite"], EIGHT_BIT)):
        code, _, err = run(["encode", vae_path, tmp_path / "clip.mp4", "-o", tmp_path / "clip.latent", "--tile",
                            "none", "-q", *option], capsys)
        assert code == 0, err
        expected = engine.encode(wan21_pair[1], torch.cat(list(read_video(tmp_path / "clip.mp4", reading=reading))))
        assert torch.equal(load_file(tmp_path / "clip.latent")["latent_tensor"], expected)
