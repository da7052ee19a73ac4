"""Growing carries (a causal attention's keys and values): one buffer per stream, exact rollback, planned."""

import pytest
import torch

from framestream.vae_core import build_vae
from framestream.vae_core.streaming import memory, probe
from framestream.vae_core.streaming.settings import Settings
from framestream.vae_core.streaming.state import StreamState, growing_carry
from framestream.vae_core.streaming.window import Window

LAYER = torch.nn.Identity()


def steps(state, chunks, fail_at=None):
    """Feeds ``chunks`` ([frames, 3] each) through one growing carry; ``fail_at`` rolls that step back once."""
    outputs = []
    with state.active():
        for i, chunk in enumerate(chunks):
            if i == fail_at:
                growing_carry(LAYER, torch.full_like(chunk, -7.0), chunk.shape[0], dim=0)
                state.carries.rollback()
            outputs.append(growing_carry(LAYER, chunk, chunk.shape[0], dim=0))
            state.carries.commit()
    return outputs


def test_the_carry_is_everything_so_far_in_one_buffer_allocated_once():
    chunks = [torch.randn(n, 3) for n in (1, 2, 3)]
    state = StreamState(expected_frames=6)
    outputs = steps(state, chunks)
    for i, out in enumerate(outputs):
        assert torch.equal(out, torch.cat(chunks[: i + 1]))
    assert len({out.data_ptr() for out in outputs}) == 1  # views of one buffer: nothing was re-concatenated
    assert state.carries.growing_bytes() == 6 * 3 * 4
    assert state.carries.carry_bytes() == 0  # not counted as a fixed-size carry


def test_a_failed_step_reruns_over_the_same_slots():
    chunks = [torch.randn(n, 3) for n in (2, 2, 2)]
    assert torch.equal(steps(StreamState(expected_frames=6), chunks, fail_at=1)[-1], torch.cat(chunks))


def test_without_a_known_length_the_buffer_doubles():
    chunks = [torch.randn(1, 3) for _ in range(5)]
    outputs = steps(StreamState(), chunks)
    assert torch.equal(outputs[-1], torch.cat(chunks))
    assert len({out.data_ptr() for out in outputs}) == 4  # capacities 1, 2, 4, 8


def test_tiles_read_their_box_and_append_what_they_own():
    """A per-position history (Mochi's attention over time) in two overlapping tiles of a 1x4 grid."""
    data = [torch.randn(n, 1, 4) for n in (1, 2, 2)]  # [frames, rows, columns] per step
    tiles = [Window((0, 0, 1, 3), (0, 0, 1, 2), (1, 4)), Window((0, 1, 1, 3), (0, 2, 1, 2), (1, 4))]
    state = StreamState(expected_frames=5)
    with state.active():
        for step, chunk in enumerate(data):
            for tile in tiles:
                columns = slice(tile.box[1], tile.box[1] + tile.box[3])
                with state.tile(tile):
                    out = growing_carry(LAYER, chunk[:, :, columns], chunk.shape[0], dim=0, positions=(1, 2))
                assert torch.equal(out, torch.cat(data[: step + 1])[:, :, columns])
            state.carries.commit()
    assert state.carries.growing_bytes() == 5 * 4 * 4


def test_a_growing_carry_without_positions_refuses_to_run_inside_a_tile():
    state = StreamState()
    with state.active(), state.tile(Window((0, 0, 1, 1), (0, 0, 1, 1), (2, 2))):
        with pytest.raises(RuntimeError, match="kept for the whole frame"):
            growing_carry(LAYER, torch.randn(1, 3), 1, dim=0)


@pytest.fixture(scope="module")
def hunyuan():
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    ref = AutoencoderKLHunyuanVideo(block_out_channels=(32, 32, 64, 64), layers_per_block=1).eval()
    return build_vae(ref.state_dict())


def test_the_plan_counts_the_attention_carry_once_at_full_length(hunyuan):
    # HunyuanVideo's mid-block attention keeps keys and values: 2 x 64 channels per latent pixel and frame
    assert probe.growing_bytes_per_cell(hunyuan) == 2 * 64 * 4
    short = memory.plan_decode(hunyuan, (1, 16, 2, 4, 6), Settings(frames_per_step=1))
    long = memory.plan_decode(hunyuan, (1, 16, 12, 4, 6), Settings(frames_per_step=1))
    assert long.estimate.growing - short.estimate.growing == 10 * 24 * 2 * 64 * 4
    grown = (long.estimate.growing - short.estimate.growing) + (long.estimate.kept - short.estimate.kept)
    assert long.estimate.total - short.estimate.total == grown  # and the frames decode() keeps, nothing else
    assert "attention carry" in long.describe(hunyuan.spatial_ratio)


def test_a_real_stream_holds_what_the_plan_says(hunyuan):
    z = torch.randn(1, 16, 5, 3, 4)
    state = StreamState(expected_frames=5)
    with state.active(), torch.no_grad():
        for i in range(5):
            hunyuan.decode_chunk(z[:, :, i : i + 1])
            state.carries.commit()
    assert state.carries.growing_bytes() == memory.plan_decode(hunyuan, z.shape, Settings()).estimate.growing
