"""One copy of the carries: tiles overwrite them in place, later tiles still read the old values, and a step with
a backup is undone exactly (the engine's out-of-memory retries are in test_tiling)."""

import pytest
import torch

from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming import engine, journal, probe
from framestream.vae_core.streaming.journal import _read_later, peak_kept_cells
from framestream.vae_core.streaming.state import StreamState
from framestream.vae_core.streaming.tiles import layout


def mask(rects, height, width):
    covered = torch.zeros(height, width, dtype=torch.int64)
    for top, left, h, w in rects:
        covered[top : top + h, left : left + w] += 1
    return covered


@pytest.mark.parametrize("grid, tile, overlap", [((8, 12), 6, 0), ((20, 20), 8, 3), ((9, 30), 5, 4), ((16, 16), 6, 5),
                                                 ((12, 12), 6, 2)])
def test_the_parts_kept_for_later_tiles_are_disjoint_and_exactly_what_they_read(grid, tile, overlap):
    windows = layout(*grid, tile, overlap).windows
    for i, window in enumerate(windows):
        after = [w.box for w in windows[i + 1 :]]
        # all the later tiles, or some of them (a rank of a distributed decode runs only its own)
        for later in (after, after[: len(after) // 2 + 1], after[::2]):
            check_parts(window, later, grid)


def check_parts(window, later, grid):
    parts = _read_later(window.owned, later)
    kept = mask([rect for rect, _ in parts], *grid)
    assert kept.max() <= 1  # disjoint
    read = (mask(later, *grid) > 0) & (mask([window.owned], *grid) > 0)
    assert torch.equal(kept > 0, read)
    for rect, readers in parts:  # every box that reads a part reads all of it: it is let go after the last
        reading = [box for box in later if journal.intersection(rect, box) is not None]
        assert len(reading) == readers and all(journal.intersection(rect, box) == rect for box in reading)


def second_copy_tiles(monkeypatch):
    """Tiles that do not know which tiles follow, so they write a second copy (the way before :mod:`journal`)."""
    tile = StreamState.tile
    monkeypatch.setattr(StreamState, "tile", lambda state, window, later=None: tile(state, window))


@pytest.mark.parametrize("tile, overlap", [(24, 8), pytest.param(32, 16, marks=pytest.mark.slow),
                                           pytest.param(48, 40, marks=pytest.mark.slow)])
def test_tiles_that_overwrite_the_carries_in_place_equal_tiles_that_write_a_second_copy(wan21_pair, monkeypatch,
                                                                                           tile, overlap):
    vae = wan21_pair[1]
    z = torch.randn(1, 16, 4, 10, 14, generator=torch.Generator().manual_seed(0))
    in_place = engine.decode(vae, z, tile=tile, overlap=overlap)
    second_copy_tiles(monkeypatch)
    assert torch.equal(in_place, engine.decode(vae, z, tile=tile, overlap=overlap))
    frames = torch.rand(9, 40, 56, 3, generator=torch.Generator().manual_seed(1))
    monkeypatch.undo()
    in_place = engine.encode(vae, frames, tile=tile, overlap=overlap)
    second_copy_tiles(monkeypatch)
    assert torch.equal(in_place, engine.encode(vae, frames, tile=tile, overlap=overlap))


def test_the_old_values_kept_for_later_tiles_peak_as_the_plan_counts(wan21_pair, monkeypatch):
    vae, peaks = wan21_pair[1], []

    for name in ("keep_for", "patch"):
        original = getattr(journal.Journal, name)

        def recorded(self, *args, original=original):
            result = original(self, *args)
            peaks.append(self.kept_bytes())
            return result

        monkeypatch.setattr(journal.Journal, name, recorded)
    z = torch.randn(1, 16, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    engine.decode(vae, z, tile=64, overlap=24, frames_per_step=1)
    windows = layout(20, 20, 8, 3).windows
    assert len(windows) == 16 and max(peaks) == peak_kept_cells(windows) * probe.tiled_carry_bytes_per_cell(vae)


def test_a_step_that_overwrote_carries_without_a_backup_cannot_be_rolled_back(wan21_pair):
    vae = wan21_pair[1]
    z = torch.randn(1, 16, 1, 3, 5)
    for rollback_to, can in ((None, False), ("cpu", True)):
        state = StreamState(rollback_to=rollback_to)
        with state.active():
            vae.decode_chunk(z)
            state.carries.commit()
            first = state.carries.snapshot()
            vae.decode_chunk(z)
        assert state.carries.can_roll_back is can
        if not can:
            with pytest.raises(FrameStreamError, match="cannot be re-run"):
                state.carries.rollback()
            continue
        state.carries.rollback()
        after = state.carries.snapshot()
        assert after.keys() == first.keys() and any(record.frames for record in first.values())
        for layer, record in first.items():
            assert after[layer].frames.keys() == record.frames.keys()
            assert all(torch.equal(after[layer].frames[name], carry) for name, carry in record.frames.items())


def other_families():
    """Each family's reduced-width model as its own tests build it (their layers read and write carries their own way)."""
    from oracle import (CONFIGS, SMALL_095, diffusers_cogvideox, diffusers_hunyuan, diffusers_hv15, diffusers_ltx,
                        diffusers_ltx2, diffusers_mochi)

    from framestream.vae_core import build_vae
    from framestream.vae_core.models.cogvideox.checkpoints import build_cogvideox

    yield "CogVideoX", build_cogvideox(diffusers_cogvideox().state_dict())
    yield "HunyuanVideo", build_vae(diffusers_hunyuan().state_dict())
    yield "HunyuanVideo 1.5", build_vae(diffusers_hv15().state_dict())
    ltx = build_vae(diffusers_ltx(SMALL_095).state_dict())
    ltx.decode_timestep = 0.05
    yield "LTX-Video 0.9.5", ltx
    yield "LTX-2", build_vae(diffusers_ltx2(CONFIGS["2.3+t"]).state_dict()).configure(decode_timestep=0.05,
                                                                                     noise_seed=1)
    yield "Mochi", build_vae(diffusers_mochi().state_dict())


@pytest.mark.slow
def test_every_family_tiles_alike_in_place_and_with_a_second_copy(monkeypatch):
    for name, vae in other_families():
        r = vae.spatial_ratio
        z = torch.randn(1, vae.latent_channels, 3, 7, 7, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            in_place = engine.decode(vae, z, tile=4 * r, overlap=2 * r)
            second_copy_tiles(monkeypatch)
            assert torch.equal(in_place, engine.decode(vae, z, tile=4 * r, overlap=2 * r)), name
        monkeypatch.undo()
