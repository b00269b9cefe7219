import numpy as np
import pytest

from actionnet.framebuffer import FrameBuffer


def frames(n, shape=(2, 2, 3)):
    """Frame k is filled with k (and channel c with k*10+c, to catch channel mixing)."""
    out = []
    for k in range(n):
        f = np.empty(shape, np.int32)
        for c in range(shape[-1]):
            f[..., c] = k * 10 + c
        out.append(f)
    return out


def stored_ids(window):
    return [int(w[0, 0, 0]) // 10 for w in window]


@pytest.mark.parametrize("T", [1, 3, 16])
def test_window_holds_last_T_frames_in_order_from_T_th_frame(T):
    fb = FrameBuffer(T, (2, 2, 3), np.int32, skip_frames=0)
    for k, f in enumerate(frames(3 * T + 2)):
        fb.push(f)
        if k + 1 < T:
            assert not fb.ready
            with pytest.raises(RuntimeError):
                fb.window()
        else:
            w = fb.window()
            assert stored_ids(w) == list(range(k + 1 - T, k + 1))
            # channels never mixed
            assert all((w[i, ..., c] == (k + 1 - T + i) * 10 + c).all() for i in range(T) for c in range(3))


def test_window_is_a_contiguous_view_without_copy():
    fb = FrameBuffer(4, (2, 2, 3), np.uint8)
    for f in frames(7):
        fb.push(f.astype(np.uint8))
    w = fb.window()
    assert w.flags.c_contiguous
    assert np.shares_memory(w, fb._ring)
    assert w[None].flags.c_contiguous  # the batch axis adds no copy either


def test_no_allocation_per_frame():
    fb = FrameBuffer(4, (2, 2, 3), np.uint8)
    ring = fb._ring
    for f in frames(20):
        fb.push(f.astype(np.uint8))
    assert fb._ring is ring
    assert fb.slot().base is ring or np.shares_memory(fb.slot(), ring)


@pytest.mark.parametrize("skip", [0, 1, 2, 4])
def test_skip_frames_stores_every_skip_plus_one_th_frame(skip):
    T = 4
    fb = FrameBuffer(T, (2, 2, 3), np.int32, skip_frames=skip)
    stored = []
    for k, f in enumerate(frames(40)):
        if fb.sample():
            fb.slot()[...] = f
            fb.commit()
            stored.append(k)
    assert stored == list(range(0, 40, skip + 1))
    assert stored_ids(fb.window()) == stored[-T:]


@pytest.mark.parametrize("cadence", [1, 2, 5])
def test_cadence_classifies_T_th_stored_frame_then_every_cadence(cadence):
    T = 3
    fb = FrameBuffer(T, (1, 1, 3), np.int32, skip_frames=0, cadence=cadence)
    due = []
    for k, f in enumerate(frames(20, (1, 1, 3))):
        fb.push(f)
        if fb.due():
            due.append(k)
    assert due == list(range(T - 1, 20, cadence))


def test_reset_forgets_frames():
    fb = FrameBuffer(2, (1, 1, 3), np.int32, skip_frames=1)
    for f in frames(5, (1, 1, 3)):
        if fb.sample():
            fb.push(f)
    fb.reset()
    assert not fb.ready and fb.stored == 0 and fb.sample() is True


@pytest.mark.parametrize("kw", [dict(clip_length=0), dict(skip_frames=-1), dict(cadence=0)])
def test_bad_arguments(kw):
    args = dict(clip_length=2, frame_shape=(1, 1, 3), skip_frames=0, cadence=1)
    args.update(kw)
    with pytest.raises(ValueError):
        FrameBuffer(**args)
