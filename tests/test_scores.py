import numpy as np
import pytest

from actionnet.scores import Scorer, softmax


def test_softmax_only_for_logits():
    row = np.array([2.0, 1.0, 0.0])
    assert Scorer("abc", logits=True, threshold=0)(row).confidence == pytest.approx(softmax(row.copy())[0])
    probs = np.array([0.2, 0.7, 0.1])
    r = Scorer("abc", logits=False, threshold=0)(probs)
    assert r.label == "b" and r.confidence == pytest.approx(0.7)


def test_below_threshold_reports_no_label():
    r = Scorer("abc", logits=False, threshold=0.8)(np.array([0.2, 0.7, 0.1]), frame=5, time=0.5)
    assert r.class_id == -1 and r.label is None and r.confidence == pytest.approx(0.7)
    e = r.to_event()
    assert e["label"] is None and e["frame"] == 5 and e["topk"][0]["label"] == "b"


def test_threshold_zero_always_labels():
    r = Scorer("abcd", logits=False, threshold=0.0)(np.full(4, 0.25))
    assert r.label is not None


def test_top_k_sorted_and_clamped():
    r = Scorer("abcde", logits=False, threshold=0, top_k=3)(np.array([0.1, 0.4, 0.05, 0.3, 0.15]))
    assert [t[1] for t in r.topk] == ["b", "d", "e"]
    assert len(Scorer("ab", logits=False, top_k=10)(np.array([0.5, 0.5])).topk) == 2


def test_smoothing_averages_and_resets():
    s = Scorer("ab", logits=False, threshold=0, smoothing=0.5)
    s(np.array([1.0, 0.0]))
    r = s(np.array([0.0, 1.0]))
    assert r.confidence == pytest.approx(0.5)
    s.reset()
    assert s(np.array([0.0, 1.0])).confidence == pytest.approx(1.0)


@pytest.mark.parametrize("kw", [dict(threshold=1.5), dict(threshold=-0.1), dict(smoothing=1.0)])
def test_bad_settings(kw):
    with pytest.raises(ValueError):
        Scorer("ab", logits=True, **kw)
