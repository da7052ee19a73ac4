"""benchmarks/gpu.py, the prepared GPU benchmark: its code paths on the CPU (--smoke), and its refusal without CUDA."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "gpu.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


@pytest.mark.slow
def test_smoke_runs_every_decode_and_they_agree(tmp_path):
    out = run("--smoke", "--out", str(tmp_path / "gpu.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = json.load(open(tmp_path / "gpu.json"))
    timed = {(line["clip"]["family"], line["run"]) for line in lines if "seconds" in line}
    at_once = "framestream untiled, frames leave at once (no pinned side stream)"
    runs = ("framestream untiled", at_once, "framestream tiled", "framestream carries in host RAM", "host algorithm",
            "diffusers")
    assert timed == {(family, run) for family in ("wan", "ltx", "hunyuan") for run in runs}
    diffs = {(line["clip"]["family"], line["run"]): line["max_abs_diff_vs_framestream_untiled"]
             for line in lines if "max_abs_diff_vs_framestream_untiled" in line}
    assert set(diffs) == {key for key in timed if key[1] != "framestream untiled"}
    for (family, name), diff in diffs.items():
        if name == at_once:
            assert diff == 0, (family, name, diff)  # the same decode, its frames handed over otherwise
        if name == "framestream carries in host RAM" or (name == "host algorithm" and family != "hunyuan"):
            assert diff <= 1e-4, (family, name, diff)  # the same layers, the same order
        if name == "diffusers" and family != "hunyuan":  # HunyuanVideo's random decoder is chaotic (README)
            assert diff <= 1e-3, (family, name, diff)


@pytest.mark.parametrize("args", [[], ["--only", "wan"]])
def test_without_cuda_it_says_so_and_runs_nothing(args):
    out = run(*args)
    assert out.returncode == 1 and out.stdout == ""
    assert "no CUDA GPU here" in out.stderr and "--smoke" in out.stderr and "Traceback" not in out.stderr
