"""What a new user meets first on the command line: one-line errors for bad options, --version, help without
markup, options offered only where they act, and a demo that reports honestly and finishes with its time."""

import pytest

from framestream import cli


def run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own exits (--help, --version, its errors)
        code = exit_.code
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
