import numpy as np

from actionnet.preprocess import FramePreparer, HostNormalizer, crop_box, normalize_reference
from actionnet.spec import ModelSpec


def spec(**kw):
    base = dict(labels=("a",), clip_length=2, height=4, width=4, input_name="x", output_name="y")
    base.update(kw)
    return ModelSpec(**base)


def test_short_side_crop_box_is_centred():
    # 100x200 frame, short side -> 4 means scale 0.04: a 4x4 crop is 100x100 source pixels, centred
    assert crop_box(100, 200, "short_side", (4,), 4, 4) == (0, 100, 50, 150)
    # short side 8 then crop 4: only the central 50x50 of the frame
    assert crop_box(100, 200, "short_side", (8,), 4, 4) == (25, 75, 75, 125)
    assert crop_box(100, 200, "squash", (4, 4), 4, 4) == (0, 100, 0, 200)


def test_resize_crop_matches_torchvision_geometry():
    # torchvision r3d: resize to (128, 171), centre-crop 112 -> in a 256x342 source, 224x224 centred
    assert crop_box(256, 342, "resize_crop", (128, 171), 112, 112) == (16, 240, 59, 283)


def test_colour_order_rgb_swaps_bgr_input():
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[..., 0] = 10  # B
    frame[..., 2] = 200  # R
    out = np.empty((4, 4, 3), np.uint8)
    FramePreparer(spec(color_order="RGB"))(frame, out)
    assert (out[..., 0] == 200).all() and (out[..., 2] == 10).all()
    FramePreparer(spec(color_order="BGR"))(frame, out)
    assert (out[..., 0] == 10).all() and (out[..., 2] == 200).all()


def test_crop_keeps_the_centre():
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, :20] = 255  # left quarter white: outside the centre crop
    out = np.empty((4, 4, 3), np.uint8)
    FramePreparer(spec(resize_mode="short_side", resize_size=(4,)))(frame, out)
    assert out.max() == 0
    FramePreparer(spec(resize_mode="squash"))(frame, out)
    assert out[:, 0].min() == 255


def test_letterbox_pads():
    frame = np.full((20, 40, 3), 255, np.uint8)  # fits as 2x4 rows 1-2 of the 4x4 input
    out = np.empty((4, 4, 3), np.uint8)
    FramePreparer(spec(resize_mode="letterbox"), pad_value=114)(frame, out)
    assert (out[0] == 114).all() and (out[-1] == 114).all() and (out[1:3] == 255).all()


def test_writes_into_the_given_slot_in_place():
    ring = np.zeros((2, 4, 4, 3), np.uint8)
    frame = np.full((16, 16, 3), 7, np.uint8)
    FramePreparer(spec(color_order="BGR"))(frame, ring[1])
    assert (ring[1] == 7).all() and (ring[0] == 0).all()


def test_host_normalizer_matches_reference():
    s = spec(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    window = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    norm = HostNormalizer(s)
    out = norm(window)
    assert out.shape == (1, 3, 2, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, normalize_reference(window, s), rtol=1e-5, atol=1e-5)
    assert norm(window) is out  # preallocated, reused
