"""The tracker on synthetic moving boxes: stable ids, crossings, occlusion, eviction."""

from __future__ import annotations

import numpy as np

from actionnet.tracker import ByteTracker, iou_matrix


def _box(cx, cy, w=20, h=40):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _ids_by_truth(tracks, truth):
    """{truth index: track id} by best IoU."""
    if not tracks:
        return {}
    iou = iou_matrix(np.array(truth, np.float32), np.array([t.box for t in tracks]))
    return {i: tracks[int(iou[i].argmax())].id for i in range(len(truth)) if iou[i].max() > 0.5}


def test_ids_stay_stable_for_parallel_movers():
    tr = ByteTracker()
    seen = []
    for f in range(60):
        truth = [_box(20 + 3 * f, 50), _box(300 - 2 * f, 150), _box(150, 250 + f)]
        tracks, evicted = tr.update(truth, [0.9, 0.8, 0.7])
        assert not evicted
        seen.append(_ids_by_truth(tracks, truth))
    assert all(s == seen[0] for s in seen) and len(set(seen[0].values())) == 3


def test_crossing_keeps_ids():
    """Two people walk through each other on the same line; the one in front hides the other
    for a few frames (no detection), then both reappear and keep their ids."""
    tr = ByteTracker(max_age=30)
    before = after = None
    for f in range(50):
        a, b = _box(50 + 4 * f, 100), _box(250 - 4 * f, 104)
        hidden = abs((50 + 4 * f) - (250 - 4 * f)) < 12
        boxes = [a] if hidden else [a, b]
        tracks, _ = tr.update(boxes, [0.9] * len(boxes))
        ids = _ids_by_truth(tracks, boxes)
        if f == 10:
            before = ids
        if f == 49:
            after = ids
    assert before == after and len(set(after.values())) == 2


def test_low_score_detections_keep_a_track_alive():
    tr = ByteTracker()
    for f in range(10):
        tracks, _ = tr.update([_box(100 + f, 100)], [0.9])
    tid = tracks[0].id
    for f in range(10, 20):  # occluded: the detector is unsure, ByteTrack's second pass keeps the id
        tracks, _ = tr.update([_box(100 + f, 100)], [0.2])
        assert [t.id for t in tracks] == [tid]
    tracks, _ = tr.update([_box(121, 100)], [0.9])
    assert [t.id for t in tracks] == [tid]


def test_eviction_after_timeout_and_reappearance_gets_a_new_id():
    tr = ByteTracker(max_age=5)
    for f in range(5):
        tracks, _ = tr.update([_box(100, 100)], [0.9])
    tid = tracks[0].id
    evicted_at = None
    for f in range(10):
        tracks, evicted = tr.update([], [])
        assert tracks == []
        if evicted:
            assert evicted == [tid] and evicted_at is None
            evicted_at = f
    assert evicted_at == 5  # lost for max_age frames, evicted on the next
    assert tr.tracks == []
    tr.update([_box(100, 100)], [0.9])
    tracks, _ = tr.update([_box(100, 100)], [0.9])
    assert len(tracks) == 1 and tracks[0].id != tid


def test_a_single_spurious_detection_never_becomes_a_track():
    tr = ByteTracker()
    tr.update([_box(50, 50)], [0.9])  # the first frame confirms at once (ByteTrack's rule)
    tracks, _ = tr.update([_box(50, 50), _box(300, 300)], [0.9, 0.9])
    assert len(tracks) == 1  # the newcomer waits for its second hit
    tracks, evicted = tr.update([_box(50, 50)], [0.9])
    assert len(tracks) == 1 and len(evicted) == 1  # and is dropped when it does not come back
