"""Tiles of one decode over several processes (gloo on the CPU): the single-process decode's frames, one writer,
and every rank stopping together when one fails."""

import glob
import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming import distributed, engine
from framestream.vae_core.streaming.distributed import share

import checkout
from oracle import CONFIGS, diffusers_hunyuan, diffusers_ltx2

TILE, OVERLAP = 48, 16  # px: a 12x12 latent grid in 3x3 tiles


def model(case: str):
    if case == "ltx2":  # a delayed decoder: its flush must stop alike on every rank
        from framestream.vae_core import build_vae

        return build_vae(diffusers_ltx2(CONFIGS["2.0"]).state_dict()).configure(noise_seed=1)
    from framestream.vae_core.demo import demo_vae

    return demo_vae(dim=8)


def latent(vae) -> torch.Tensor:
    side = 12 if vae.spatial_ratio == 8 else 4
    return torch.randn(1, vae.latent_channels, 3, side, side, generator=torch.Generator().manual_seed(0))


def tile_of(vae) -> int:
    return TILE if vae.spatial_ratio == 8 else 2 * vae.spatial_ratio


def _rank(rank: int, world: int, init: str, case: str, folder: str, fail_rank: int | None, tile: int | None) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        vae = model(case)
        if rank == fail_rank:  # this rank fails in the second step's tiles
            calls, decode_tile = [], vae.decode_tile

            def failing(features):
                calls.append(1)
                if len(calls) > 3:
                    raise RuntimeError("a simulated failure on this rank")
                return decode_tile(features)

            vae.decode_tile = failing
        sink = None
        if case == "file":
            from framestream.vae_core.io.video import VideoFileSink

            sink = VideoFileSink(os.path.join(folder, "out.mp4"), 16) if rank == 0 else None
        try:
            frames = distributed.decode(vae, latent(vae), sink, tile=tile or tile_of(vae), overlap=OVERLAP)
            outcome = {"frames": frames}
        except FrameStreamError as err:
            outcome = {"error": str(err)}
        except RuntimeError as err:
            outcome = {"error": f"RuntimeError: {err}"}
        torch.save(outcome, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def spread(tmp_path, world: int, case: str = "wan", fail_rank: int | None = None, tile: int | None = None) -> list[dict]:
    mp.spawn(checkout.spawned, args=(__name__, "_rank", world, str(tmp_path / "init"), case, str(tmp_path), fail_rank,
                                    tile), nprocs=world)
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(world)]


@pytest.mark.parametrize("world", [2, 4])
def test_the_ranks_decode_the_single_process_frames(tmp_path, world):
    outcomes = spread(tmp_path, world)
    vae = model("wan")
    expected = engine.decode(vae, latent(vae), tile=TILE, overlap=OVERLAP)
    assert outcomes[0]["frames"].shape == expected.shape
    assert (outcomes[0]["frames"] - expected).abs().max() < 1e-4
    assert all(outcome["frames"] is None for outcome in outcomes[1:])  # rank 0 alone has the result


@pytest.mark.slow
def test_a_delayed_decoder_flushes_alike_on_every_rank(tmp_path):
    outcomes = spread(tmp_path, 2, "ltx2")
    vae = model("ltx2")
    expected = engine.decode(vae, latent(vae), tile=tile_of(vae), overlap=OVERLAP)
    assert (outcomes[0]["frames"] - expected).abs().max() < 1e-4


def test_more_processes_than_tiles_is_refused_on_every_rank(tmp_path):
    outcomes = spread(tmp_path, 2, tile=96)  # the whole 12x12 grid in one tile
    assert all("2 processes need at least 2 tiles, and this decode has the whole frame in one tile" in o["error"]
               for o in outcomes)


def test_a_rank_that_fails_stops_every_rank_and_nothing_is_written(tmp_path):
    outcomes = spread(tmp_path, 2, "file", fail_rank=1)
    assert outcomes[1]["error"] == "RuntimeError: a simulated failure on this rank"
    assert "rank 1 of the distributed decode failed" in outcomes[0]["error"]
    assert not glob.glob(str(tmp_path / "*.mp4")) and not glob.glob(str(tmp_path / ".*"))


def test_tiles_are_shared_in_runs_of_about_equal_area():
    assert share(9, [4] * 9, 2) == [range(0, 5), range(5, 9)] or share(9, [4] * 9, 2) == [range(0, 4), range(4, 9)]
    assert share(4, [1, 1, 1, 9], 2) == [range(0, 3), range(3, 4)]
    assert share(3, [1, 1, 1], 3) == [range(0, 1), range(1, 2), range(2, 3)]
    runs = share(16, list(range(1, 17)), 4)
    assert [len(run) for run in runs] and sum(len(run) for run in runs) == 16 and all(len(run) for run in runs)


def test_groupnorm_families_and_an_uninitialised_group_are_refused():
    from framestream.vae_core import build_vae

    hunyuan = build_vae(diffusers_hunyuan().state_dict())
    with pytest.raises(FrameStreamError, match="GroupNorms take statistics across tiles"):
        distributed.decode(hunyuan, torch.randn(1, 16, 2, 4, 4), tile=16, overlap=8)
    wan = model("wan")
    with pytest.raises(FrameStreamError, match="needs torch.distributed initialised"):
        distributed.decode(wan, latent(wan), tile=TILE, overlap=OVERLAP)


def test_torchrun_decodes_what_one_process_decodes_and_rank_0_alone_writes(tmp_path):
    """``torchrun --nproc-per-node 2 -m framestream decode`` (on this checkout: ``checkout.SCRIPT``), against the
    single-process command."""
    from safetensors.torch import load_file, save_file

    vae = model("wan")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, tmp_path / "vae.safetensors")
    save_file({"latent_tensor": latent(vae)[0]}, tmp_path / "clip.latent")
    common = ["decode", str(tmp_path / "vae.safetensors"), str(tmp_path / "clip.latent"), "--tile", str(TILE),
              "--overlap", str(OVERLAP), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    spread_run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                                 checkout.SCRIPT, *common, "-o", str(tmp_path / "spread.safetensors")],
                                env=env, capture_output=True, text=True, timeout=300)
    assert spread_run.returncode == 0, spread_run.stderr[-3000:]
    assert spread_run.stdout.count("decoded (16, 3, 12, 12) -> 9 frames 96x96") == 1  # rank 0 alone reports
    one = subprocess.run([*checkout.COMMAND, *common, "-o", str(tmp_path / "one.safetensors")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    spread_frames, frames = (load_file(tmp_path / f"{name}.safetensors")["frames"] for name in ("spread", "one"))
    assert (spread_frames - frames).abs().max() < 1e-4
    assert sorted(os.listdir(tmp_path)) == ["clip.latent", "one.safetensors", "spread.safetensors", "vae.safetensors"]


def test_torchrun_with_more_processes_than_tiles_fails_with_one_line_each_and_writes_nothing(tmp_path):
    from safetensors.torch import save_file

    vae = model("wan")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, tmp_path / "vae.safetensors")
    save_file({"latent_tensor": latent(vae)[0]}, tmp_path / "clip.latent")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           checkout.SCRIPT, "decode", str(tmp_path / "vae.safetensors"), str(tmp_path / "clip.latent"),
                           "--tile", "none", "--device", "cpu", "-o", str(tmp_path / "out.mp4")],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("framestream: error:")]
    assert len(errors) == 2 and all("2 processes need at least 2 tiles" in line for line in errors)
    assert sorted(os.listdir(tmp_path)) == ["clip.latent", "vae.safetensors"]
