"""The memory plan: the carry probe against a real stream, the estimate's arithmetic, and tile choice."""

import pytest
import torch

from framestream.vae_core.streaming import estimate, memory, probe
from framestream.vae_core.streaming.state import StreamState
from helpers import step_estimate


def test_carry_probe_matches_the_carries_of_a_real_stream(wan21_pair):
    vae = wan21_pair[1]
    state = StreamState()
    with state.active():
        for _ in range(3):  # carries stop growing once every layer has its full history
            vae.decode_chunk(torch.randn(1, 16, 1, 3, 5))
            state.carries.commit()
    assert state.carries.carry_bytes() == probe.carry_bytes_per_cell(vae) * 3 * 5


def test_encode_carry_probe_matches_the_carries_of_a_real_stream(wan21_pair):
    vae = wan21_pair[1]
    state = StreamState()
    with state.active():
        for frames in (1, 4, 4):
            vae.encode_chunk(torch.randn(1, 3, frames, 16, 24))
            state.carries.commit()
    assert state.carries.carry_bytes() == probe.carry_bytes_per_cell(vae, "encode") * 2 * 3


def test_estimate_is_carries_plus_one_tile_of_activations_plus_the_output(wan21_pair):
    vae = wan21_pair[1]
    per_cell = probe.carry_bytes_per_cell(vae)
    whole = step_estimate(vae, 64, 96, 2)
    tiled = step_estimate(vae, 64, 96, 2, 48)
    frames = 4 * 2
    assert whole.carries == per_cell * 8 * 12  # the whole frame, once
    # 2x2 tiles on the 8x12 grid (rows 0-6 and 2-8): the first row's tiles keep rows 2-4 of what they own for the
    # second row, 2 x 6 cells each of the tiled stages' carries, until it has read them
    assert tiled.carries == per_cell * 8 * 12 + probe.tiled_carry_bytes_per_cell(vae) * 2 * 2 * 6
    assert whole.activations == int(estimate.LIVE_AT_FINEST * vae.finest_width * frames * 64 * 96 * 4)
    assert tiled.activations == int(estimate.LIVE_AT_FINEST * vae.finest_width * frames * 48 * 48 * 4)
    assert whole.output == tiled.output == 3 * frames * 64 * 96 * 4  # one step's frames, once
    # on the CPU the kernels' first-use buffers come on top (measured in benchmarks/plan_vs_engine.py)
    assert whole.total == whole.carries + whole.activations + whole.output + estimate.KERNELS_ON_FIRST_USE


def test_plan_keeps_the_whole_frame_when_it_fits(wan21_pair):
    vae = wan21_pair[1]
    need = step_estimate(vae, 256, 256, 1).total
    assert memory.plan(vae, 256, 256, 1, 64, int(need / memory.PLANNED_SHARE) + 1) == memory.Plan(None, False)


@pytest.mark.parametrize("tile", [136, 200])
def test_plan_takes_the_largest_tile_that_fits_the_planned_share_of_the_budget(wan21_pair, tile):
    vae = wan21_pair[1]
    budget = step_estimate(vae, 256, 256, 1, tile, overlap_px=64).total / memory.PLANNED_SHARE
    assert memory.plan(vae, 256, 256, 1, 64, budget) == memory.Plan(tile, False)
    assert step_estimate(vae, 256, 256, 1, tile + vae.spatial_ratio, overlap_px=64).total > \
        memory.PLANNED_SHARE * budget


def test_plan_falls_back_to_the_smallest_tile_when_nothing_fits(wan21_pair):
    """Below the smallest tile the overlap asked allows, tiles overlap by a quarter of their size, down to 4
    latent cells; when even those do not fit, the plan is the smallest of them."""
    vae = wan21_pair[1]
    smallest = memory.Plan(memory.SMALLEST_TILE_CELLS * 8, False, 8)
    assert memory.plan(vae, 512, 512, 1, 32, 1) == memory.plan(vae, 512, 512, 1, 80, 1) == smallest


def test_tiles_smaller_than_the_overlap_allows_fit_a_small_budget_with_a_narrower_overlap(wan21_pair):
    """A budget that no tile of at least two 64 px overlaps plus a cell fits (136 px), but 64 px tiles
    overlapping by 16 px do, as a user's --tile 64 would."""
    vae = wan21_pair[1]
    smallest_default = step_estimate(vae, 256, 256, 1, 136, overlap_px=64).total
    quarter = step_estimate(vae, 256, 256, 1, 64, overlap_px=16).total
    assert quarter < smallest_default
    got = memory.plan(vae, 256, 256, 1, 64, quarter / memory.PLANNED_SHARE + 1)
    assert got.tile_px >= 64 and got.overlap_px == min(64, got.tile_px // 4 // 8 * 8) and got.tile_px < 136
    assert step_estimate(vae, 256, 256, 1, got.tile_px, overlap_px=got.overlap_px).total <= quarter


def test_plan_reads_free_memory_when_no_budget_is_given(wan21_pair, monkeypatch):
    vae = wan21_pair[1]
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1)
    assert memory.plan(vae, 512, 512, 1, 32, None).tile_px == memory.SMALLEST_TILE_CELLS * 8
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**50)
    assert memory.plan(vae, 512, 512, 1, 64, None).tile_px is None


def test_offloaded_carries_count_only_the_tile_at_work(wan21_pair):
    vae = wan21_pair[1]
    kept = step_estimate(vae, 512, 512, 1, 200)
    offloaded = step_estimate(vae, 512, 512, 1, 200, offload_carries=True)
    assert offloaded.carries == 2 * probe.carry_bytes_per_cell(vae) * 25 * 25
    assert (offloaded.activations, offloaded.output) == (kept.activations, kept.output)


def test_on_a_gpu_a_step_backs_up_one_copy_of_the_carries_in_host_ram(wan21_pair):
    vae, gpu = wan21_pair[1], torch.device("cuda")
    per_cell = probe.carry_bytes_per_cell(vae)
    on_gpu, on_cpu = step_estimate(vae, 256, 256, 1, None, device=gpu), step_estimate(vae, 256, 256, 1)
    assert on_gpu.carries == on_cpu.carries == per_cell * 32 * 32
    assert (on_gpu.host, on_cpu.host) == (per_cell * 32 * 32, 0)
    assert (on_gpu.kernels, on_cpu.kernels) == (0, estimate.KERNELS_ON_FIRST_USE)  # measured on the CPU only


def test_on_a_gpu_the_plan_moves_carries_to_host_ram_only_when_no_tile_fits_otherwise(wan21_pair):
    vae, gpu = wan21_pair[1], torch.device("cuda")
    smallest_kept = step_estimate(vae, 1024, 1024, 1, 136, device=gpu, overlap_px=64).total
    assert memory.plan(vae, 1024, 1024, 1, 64, smallest_kept / memory.PLANNED_SHARE, device=gpu) == \
        memory.Plan(136, False)
    budget = step_estimate(vae, 1024, 1024, 1, 400, offload_carries=True, device=gpu,
                             overlap_px=64).total / memory.PLANNED_SHARE
    assert budget < smallest_kept  # so keeping the carries on the device fits no tile
    assert memory.plan(vae, 1024, 1024, 1, 64, budget, device=gpu) == memory.Plan(400, True)
    # on the CPU there is nowhere to move them: no tile fits, so the plan is the smallest, 4 cells overlapping by 1
    assert memory.plan(vae, 1024, 1024, 1, 64, budget) == memory.Plan(32, False, 8)
