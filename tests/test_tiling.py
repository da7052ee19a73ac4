"""Spatial tiles, their blending, temporal windows and recovery from running out of memory."""

import pytest
import torch

from framestream.vae_core.streaming import engine, memory
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming.runtime import OUT_OF_MEMORY
from framestream.vae_core.streaming.carries import CarryStore
from framestream.vae_core.streaming.state import StreamState
from framestream.vae_core.streaming.tiles import blend_weights, layout, spans

from toy_models import LookAheadVAE, PointwiseChunkNormVAE, PointwiseVAE

AWKWARD = [  # (grid height, width, tile, overlap) in latent cells
    (7, 11, 4, 1),  # tile does not divide the frame
    (9, 9, 4, 2),  # overlap of half a tile: three tiles meet
    (10, 13, 5, 3),  # overlap above half a tile
    (6, 6, 6, 2),  # one tile
    (5, 17, 3, 2),
]


@pytest.mark.parametrize("height, width, tile, overlap", AWKWARD)
def test_layout_covers_every_cell_and_owned_parts_partition_the_frame(height, width, tile, overlap):
    tiles = layout(height, width, tile, overlap)
    covered, owned = torch.zeros(height, width), torch.zeros(height, width)
    for w in tiles.windows:
        covered[w.region(1, w.box)] += 1
        owned[w.region(1, w.owned)] += 1
        top, left, h, w_ = w.box
        assert 0 <= top and top + h <= height and 0 <= left and left + w_ <= width and h <= tile and w_ <= tile
    assert covered.min() >= 1
    assert torch.equal(owned, torch.ones(height, width))


@pytest.mark.parametrize("height, width, tile, overlap", AWKWARD)
def test_neighbours_overlap_by_at_least_the_overlap(height, width, tile, overlap):
    for length in (height, width):
        intervals = spans(length, min(tile, length), overlap)
        for (a0, a1), (b0, b1) in zip(intervals, intervals[1:]):
            assert a1 - b0 >= overlap and b0 > a0


@pytest.mark.parametrize("height, width, tile, overlap", AWKWARD)
@pytest.mark.parametrize("scale", [1, 8])
def test_blend_weights_are_positive_and_two_tile_overlaps_sum_to_one(height, width, tile, overlap, scale):
    tiles = layout(height, width, tile, overlap)
    total = torch.zeros(height * scale, width * scale)
    for w in tiles.windows:
        weights = blend_weights(w, tiles.windows, scale)
        assert weights.min() > 0 and weights.max() <= 1
        total[w.region(scale, w.box)] += weights
    assert total.min() > 0
    if 2 * overlap < tile:  # at most two tiles per axis meet anywhere: an exact partition of unity
        assert torch.allclose(total, torch.ones_like(total))


def test_overlap_not_smaller_than_tile_is_refused():
    with pytest.raises(FrameStreamError, match="overlap"):
        spans(20, 4, 4)


@pytest.fixture(scope="module")
def toy():
    return PointwiseVAE().eval()


def toy_latent(t=6, h=9, w=13, seed=0):
    return torch.randn(1, 4, t, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tile, overlap", [(16, 4), (20, 8), (12, 4), (24, 12), (36, 16)])
@pytest.mark.parametrize("per_step", [1, 3])
def test_tiled_decode_equals_whole_frame_when_tiles_are_exact(toy, tile, overlap, per_step):
    """The toy's high-resolution part is pointwise, so only carry or blending mistakes can differ."""
    z = toy_latent()
    whole = engine.decode(toy, z, frames_per_step=per_step)
    tiled = engine.decode(toy, z, frames_per_step=per_step, tile=tile, overlap=overlap)
    assert (tiled - whole).abs().max().item() < 1e-6
    assert whole.std() > 0.05


@pytest.mark.parametrize("tile, overlap", [(16, 4), (24, 12)])
def test_tiled_encode_equals_whole_frame_when_tiles_are_exact(toy, tile, overlap):
    frames = torch.rand(9, 36, 52, 3, generator=torch.Generator().manual_seed(3))
    whole = engine.encode(toy, frames)
    tiled = engine.encode(toy, frames, tile=tile, overlap=overlap)
    assert (tiled - whole).abs().max().item() < 1e-6


@pytest.fixture(scope="module")
def chunk_norms():
    return PointwiseChunkNormVAE(seed=2).eval()


@pytest.mark.parametrize("tile, overlap", [(16, 4), (24, 12)])
def test_tiles_gather_each_steps_norm_statistics_exactly(chunk_norms, tile, overlap):
    """Statistics over a step's whole frame, in tiles: each norm's are gathered from every tile once the norms
    before it have theirs, so the pointwise toy's tiles equal the whole frame; fewer passes estimate the deeper
    norms from partial sums, and differ. ``statistics_passes`` more than the norms is exact too."""
    z = toy_latent(seed=4)
    whole = engine.decode(chunk_norms, z, frames_per_step=2)
    tiled = {passes: engine.decode(chunk_norms, z, frames_per_step=2, tile=tile, overlap=overlap,
                                   statistics_passes=passes) for passes in (None, 2, 1, 0)}
    assert (tiled[None] - whole).abs().max().item() < 1e-5
    for passes in (2, 1, 0):
        assert (tiled[passes] - whole).abs().max().item() > 1e-3
    # an encode estimates them in one pass unless asked for more (its norms follow its costliest layers)
    frames = torch.rand(6, 36, 52, 3, generator=torch.Generator().manual_seed(5))
    encoded = engine.encode(chunk_norms, frames, latents_per_step=2)
    assert (engine.encode(chunk_norms, frames, latents_per_step=2, tile=tile, overlap=overlap, statistics_passes=3)
            - encoded).abs().max().item() < 1e-5
    assert (engine.encode(chunk_norms, frames, latents_per_step=2, tile=tile, overlap=overlap)
            - encoded).abs().max().item() > 1e-3


def test_a_gathering_pass_stops_each_tile_at_the_norm_it_gathers(chunk_norms):
    """The layers after a tiled step's last norm run in the writing pass, and once more in the stream's first
    step (which learns that no norm is left); with one estimating pass, twice every step."""
    calls = []
    handle = chunk_norms.dec_out.register_forward_hook(lambda *_: calls.append(1))
    try:
        z = toy_latent(seed=4)
        engine.decode(chunk_norms, z, frames_per_step=2, tile=16, overlap=4)
        tiles = len(layout(9, 13, 16 // 4, 1).windows)
        assert tiles > 1 and len(calls) == tiles * (3 + 1)  # 3 steps
        calls.clear()
        engine.decode(chunk_norms, z, frames_per_step=2, tile=16, overlap=4, statistics_passes=1)
        assert len(calls) == tiles * 3 * 2
    finally:
        handle.remove()


def test_wan_tile_covering_the_frame_is_the_untiled_decode(wan21_pair):
    vae = wan21_pair[1]
    z = torch.randn(1, 16, 3, 3, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(engine.decode(vae, z, tile=64, overlap=16), engine.decode(vae, z))
    frames = torch.rand(5, 24, 40, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(engine.encode(vae, frames, tile=48, overlap=16), engine.encode(vae, frames))


def test_wan_tiled_decode_stays_close_to_untiled(wan21_pair):
    """Random weights exaggerate tile-edge effects; the trained fixture is judged in the benchmark."""
    vae = wan21_pair[1]
    z = torch.randn(1, 16, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    whole, tiled = engine.decode(vae, z), engine.decode(vae, z, tile=48, overlap=16)
    assert tiled.shape == whole.shape
    assert 0 < (tiled - whole).abs().max() < 0.5


class OutOfMemoryOnce:
    """Makes one call of a method raise the out-of-memory error, after the step already wrote carries."""

    def __init__(self, model, name, fail_on_call):
        self.model, self.name, self.fail_on_call, self.calls = model, name, fail_on_call, 0
        self.original = getattr(model, name)

    def __enter__(self):
        def patched(x):
            self.calls += 1
            y = self.original(x)  # carries of this call are already written when it fails
            if self.calls == self.fail_on_call:
                raise OUT_OF_MEMORY("CUDA out of memory (simulated)")
            return y

        setattr(self.model, self.name, patched)
        return self

    def __exit__(self, *exc):
        delattr(self.model, self.name)


class TilerOnAGpu(engine.Tiler):
    """Believes it runs on a GPU: a step keeps what it overwrites in host RAM, and running out of memory may move the
    carries there (on this CPU they stay where they are)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_gpu = True


@pytest.mark.parametrize("fail_on_call", [1, 4, 7])
def test_out_of_memory_in_a_step_retries_it_with_smaller_tiles_and_loses_nothing(toy, fail_on_call, monkeypatch):
    z = toy_latent(t=7)
    expected = engine.decode(toy, z, frames_per_step=1)
    monkeypatch.setattr(engine, "Tiler", TilerOnAGpu)
    retries = []
    with OutOfMemoryOnce(toy, "decode_tile", fail_on_call):  # the calls of one-frame steps
        got = engine.decode(toy, z, overlap=8, on_retry=retries.append, frames_per_step=1)
    assert len(retries) == 1 and "smaller tiles" in retries[0]
    assert (got - expected).abs().max().item() < 1e-6


def test_out_of_memory_in_encode_is_recovered(toy, monkeypatch):
    frames = torch.rand(9, 36, 52, 3, generator=torch.Generator().manual_seed(3))
    expected = engine.encode(toy, frames)
    monkeypatch.setattr(engine, "Tiler", TilerOnAGpu)
    with OutOfMemoryOnce(toy, "encode_tile", 2):
        got = engine.encode(toy, frames, overlap=8, on_retry=lambda message: None)
    assert (got - expected).abs().max().item() < 1e-6


def test_a_cpu_step_that_overwrote_its_carries_is_not_re_run(toy):
    """On the CPU a step keeps no copy of what it overwrote (a failed allocation there ends the run anyway), so
    an out-of-memory after the first step is raised, not retried from carries that are no longer there."""
    retries = []
    with OutOfMemoryOnce(toy, "decode_tile", 4), pytest.raises(OUT_OF_MEMORY):
        engine.decode(toy, toy_latent(t=7), overlap=8, on_retry=retries.append, frames_per_step=1)
    assert retries == []


def test_out_of_memory_with_the_smallest_tiles_is_raised(toy):
    class Always(OutOfMemoryOnce):
        def __enter__(self):
            setattr(self.model, self.name, lambda x: (_ for _ in ()).throw(OUT_OF_MEMORY("simulated")))
            return self

    with Always(toy, "decode_tile", 0), pytest.raises(OUT_OF_MEMORY):
        engine.decode(toy, toy_latent(t=2), overlap=4)


def test_out_of_memory_with_the_smallest_tiles_moves_the_carries_to_host_ram_and_loses_nothing(toy, monkeypatch):
    z = toy_latent(t=7)
    expected = engine.decode(toy, z)
    monkeypatch.setattr(engine, "Tiler", TilerOnAGpu)
    moved, retries = [], []
    monkeypatch.setattr(CarryStore, "offload", lambda carries, device: moved.append((carries, device)))
    with OutOfMemoryOnce(toy, "decode_tile", 9):  # 2x2-cell tiles with a 1-cell overlap cannot shrink
        got = engine.decode(toy, z, tile=8, overlap=4, on_retry=retries.append)
    assert len(retries) == 1 and retries[0].endswith("retrying it with the causal carries moved to host RAM")
    assert [device for _, device in moved] == [torch.device("cpu")]
    assert (got - expected).abs().max().item() < 1e-6


def test_a_plan_with_carries_in_host_ram_starts_every_stream_there(toy):
    tiler = engine.Tiler(toy, (9, 13), memory.Plan(None, True), 0, print)
    assert tiler.new_state().carries.device == torch.device("cpu") and not tiler.may_offload
    assert engine.Tiler(toy, (9, 13), memory.Plan(None, False), 0, print).new_state().carries.device is None


def test_carries_moved_to_host_ram_keep_their_values():
    state = StreamState()
    layer = torch.nn.Identity()
    state.write_frames(layer, torch.arange(6.0).view(1, 1, 2, 1, 3))
    state.carries.commit()
    state.carries.offload(torch.device("cpu"))
    assert state.carries.device == torch.device("cpu")
    assert torch.equal(state.read_frames(layer, torch.zeros(1)), torch.arange(6.0).view(1, 1, 2, 1, 3))


@pytest.mark.parametrize("core, halo", [(1, 2), (3, 2), (4, 3), (2, 5)])
def test_look_ahead_decoder_in_windows_with_enough_halo_equals_whole_clip(core, halo):
    vae = LookAheadVAE(core, halo, blend=0).eval()
    z = torch.randn(1, 4, 9, 3, 2, generator=torch.Generator().manual_seed(core))
    with torch.no_grad():
        whole = ((vae.decode_chunk(z) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    got = engine.decode(vae, z)
    assert got.shape == whole.shape == (17, 3, 2, 3)
    assert (got - whole).abs().max().item() < 1e-6


def test_look_ahead_decoder_with_short_halo_is_cross_faded_in_place():
    vae = LookAheadVAE(core=3, halo=2, blend=1).eval()
    z = torch.randn(1, 4, 10, 3, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = ((vae.decode_chunk(z) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    got = engine.decode(vae, z)
    assert got.shape == whole.shape
    error = (got - whole).abs().amax(dim=(1, 2, 3))
    assert error.max() < 0.2  # approximate, but frames are where they belong: a shift would be far off
    assert torch.equal(got[:3], whole[:3])  # the first window's own frames need no look-ahead beyond its halo
