"""Reported labels and segments: what a run says it saw, as opposed to each window's raw top class.

A clip classifier's top class flickers: a looping or jumping video, an ambiguous pose or a
window that straddles two actions flips the label for a few windows. A moving average of the
probabilities (``--smoothing``) only delays every change. Here a *candidate* label must stay the
top class (above the threshold) for ``min_duration`` seconds of stream time before it becomes the
*reported* label; shorter bursts stay inside the current segment. ``min_duration=0`` reports every
change at once, which is the behaviour without this module.

A *segment* is a run of one reported label: it is closed at a reported change, when the reported
label drops below the threshold (a candidate ``None`` that held long enough), at a reconnect, an
eviction (per-person tracks) and at the end of the run or a stop. When a change wins, the old
segment ends at the last classification before the winning candidate first appeared and the new
one starts there: the segments tile the stream as the raw labels would have, minus the bursts.

Whole-frame runs (:class:`~actionnet.net.ActionNet`) and every per-person track
(:class:`~actionnet.persons.PersonState`) own one :class:`LabelTracker` each and use it the same
way; the events it returns are the ``segment`` lines of the events file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

from .scores import Classification

# why a segment was closed (the ``reason`` field of a segment event)
REASONS = ("change", "below_threshold", "reconnect", "evicted", "end", "stop", "reset")


@dataclass
class Segment:
    label: str
    start_frame: int
    start_time: float
    end_frame: int
    end_time: float
    confidence: float  # the highest confidence of the label seen in the segment
    total: float = 0.0  # sum and count of those confidences, for the mean
    count: int = 0

    @property
    def duration(self) -> float:
        return max(0.0, self.end_time - self.start_time)

    def to_event(self, track_id: Optional[int] = None, reason: Optional[str] = None) -> dict:
        ev = {"event": "segment"}
        if track_id is not None:
            ev["track_id"] = track_id
        ev.update({"label": self.label, "start_frame": self.start_frame, "start_time": round(self.start_time, 4),
                   "end_frame": self.end_frame, "end_time": round(self.end_time, 4),
                   "max_confidence": round(self.confidence, 6),
                   "mean_confidence": round(self.total / self.count, 6) if self.count else None,
                   "duration": round(self.duration, 4)})
        if reason is not None:
            ev["reason"] = reason
        return ev


def label_confidence(c: Classification, label: Optional[str]) -> Optional[float]:
    """The confidence the classification gives ``label`` (from its top-k), None when not listed."""
    if label is None:
        return None
    if c.label == label:
        return c.confidence
    for _, name, conf in c.topk:
        if name == label:
            return conf
    return None


class LabelTracker:
    """Hysteresis on one stream of classifications (one whole-frame stream or one person).

    ``update(c)`` returns the segment events that ``c`` closed; ``close(reason)`` and
    ``reset(reason)`` return the open segment's event. ``reported`` is the label to show.
    """

    def __init__(self, min_duration: float = 0.0, track_id: Optional[int] = None,
                 summary: Optional["SegmentSummary"] = None):
        if min_duration < 0:
            raise ValueError(f"min_duration must be >= 0, got {min_duration}")
        self.min_duration = float(min_duration)
        self.track_id = track_id
        self.summary = summary
        self.segment: Optional[Segment] = None
        self.reported: Optional[str] = None
        self.reported_id = -1
        self.changes = 0  # how many times the reported label changed (None counts as a label)
        self._started = False  # whether anything has been reported yet
        self._candidate: Optional[tuple] = None  # (label, class_id, onset frame, onset time, end before onset)
        self._prev: Optional[tuple] = None  # (frame, time) of the previous classification

    def update(self, c: Classification) -> List[dict]:
        events: List[dict] = []
        label = c.label
        if self._started and label == self.reported:
            self._candidate = None
        else:
            if self._candidate is None or self._candidate[0] != label:
                # label, class_id, onset frame, onset time, (frame, time) before the onset, confidences
                self._candidate = [label, c.class_id, c.frame, c.time, self._prev, 0.0, 0.0, 0]
            if c.time - self._candidate[3] >= self.min_duration - 1e-9:
                self._switch(self._candidate, events)
            elif label is not None:  # the candidate's confidences, for its segment if it wins
                cand = self._candidate
                cand[5], cand[6], cand[7] = max(cand[5], c.confidence), cand[6] + c.confidence, cand[7] + 1
        seg = self.segment
        if seg is not None:
            seg.end_frame, seg.end_time = c.frame, c.time
            conf = label_confidence(c, seg.label)
            if conf is not None:
                seg.confidence = max(seg.confidence, conf)
                seg.total += conf
                seg.count += 1
        self._prev = (c.frame, c.time)
        return events

    def _switch(self, cand: list, events: List[dict]) -> None:
        label, class_id, frame, time, before, top, total, count = cand
        if self.segment is not None:
            if before is not None:  # the old segment ends where the winning candidate began
                self.segment.end_frame, self.segment.end_time = before
            events.append(self._close("change" if label is not None else "below_threshold"))
        if self._started:
            self.changes += 1
        self._started = True
        self.reported, self.reported_id = label, class_id
        self._candidate = None
        self.segment = Segment(label, frame, time, frame, time, top, total, count) if label is not None else None

    def _close(self, reason: str) -> dict:
        seg, self.segment = self.segment, None
        ev = seg.to_event(self.track_id, reason)
        if self.summary is not None:
            self.summary.add(seg, self.track_id)
        return ev

    def close(self, reason: str = "end") -> List[dict]:
        """Close the open segment (end of the run, a stop); the reported label stays."""
        return [self._close(reason)] if self.segment is not None else []

    def reset(self, reason: str = "reset") -> List[dict]:
        """Close the open segment and forget the reported label (a reconnect, a new stream)."""
        events = self.close(reason)
        self.reported, self.reported_id = None, -1
        self._started = False
        self._candidate = self._prev = None
        return events

    def annotate(self, event: dict) -> dict:
        """Add the reported label and the open segment's start to a classification event."""
        event["reported_label"] = self.reported
        event["reported_class_id"] = self.reported_id
        if self.segment is not None:
            event["segment_start_frame"] = self.segment.start_frame
            event["segment_start_time"] = round(self.segment.start_time, 4)
        return event

    def shown(self, c: Optional[Classification]) -> Optional[Classification]:
        """What an overlay draws: ``c`` relabelled with the reported label (and the confidence
        ``c`` gives it); ``c`` itself when the two agree; None until a label has held long enough."""
        if c is None or not self._started:
            return None
        if c.label == self.reported:
            return c
        if self.reported is None:
            return dataclasses.replace(c, class_id=-1, label=None)
        conf = label_confidence(c, self.reported)
        return dataclasses.replace(c, class_id=self.reported_id, label=self.reported,
                                   confidence=conf if conf is not None else 0.0)


class SegmentSummary:
    """Closed segments of a run, for its last words: the longest actions, per label and track."""

    def __init__(self):
        self.longest: List[tuple] = []  # (duration, label, track_id, start_time, end_time), best first
        self.totals: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self.keep = 5

    def add(self, seg: Segment, track_id: Optional[int] = None) -> None:
        d = seg.duration
        self.totals[seg.label] = self.totals.get(seg.label, 0.0) + d
        self.counts[seg.label] = self.counts.get(seg.label, 0) + 1
        self.longest.append((d, seg.label, track_id, seg.start_time, seg.end_time))
        self.longest.sort(key=lambda x: -x[0])
        del self.longest[self.keep:]

    def to_event(self) -> dict:
        return {"event": "summary",
                "labels": [{"label": k, "seconds": round(v, 3), "segments": self.counts[k]}
                           for k, v in sorted(self.totals.items(), key=lambda kv: -kv[1])],
                "longest": [dict({"track_id": t} if t is not None else {}, label=lab, start_time=round(a, 4),
                                 end_time=round(b, 4), duration=round(d, 4))
                            for d, lab, t, a, b in self.longest]}

    def text(self, n: int = 3) -> str:
        if not self.longest:
            return "no action segments"
        parts = []
        for d, lab, t, a, b in self.longest[:n]:
            who = f"#{t} " if t is not None else ""
            parts.append(f"{who}{lab} {d:.1f} s ({_clock(a)}-{_clock(b)})")
        return "longest actions: " + ", ".join(parts)


def _clock(t: float) -> str:
    m, s = divmod(max(0.0, t), 60.0)
    return f"{int(m)}:{s:04.1f}"


class StreamMarks:
    """Reconnect and dropped-frame markers for the events file (the timeline draws them).

    Drops are summed and written at most once a second of stream time, so a live source that
    outruns inference does not add a line per frame."""

    def __init__(self, source, every: float = 1.0):
        self.source = source
        self.every = every
        self.dropped = getattr(source, "dropped", 0) or 0
        self._pending = 0
        self._since: Optional[tuple] = None
        self._last_emit: Optional[float] = None
        self.last: Optional[tuple] = None  # (frame, time) of the latest frame: where the run ended

    def reconnect(self, frame: int, time: float) -> dict:
        return {"event": "reconnect", "frame": frame, "time": round(time, 4)}

    def check(self, frame: int, time: float) -> List[dict]:
        self.last = (frame, time)
        now = getattr(self.source, "dropped", 0) or 0
        if now > self.dropped:
            self._pending += now - self.dropped
            self.dropped = now
            if self._since is None:
                self._since = (frame, time)
        if self._pending and (self._last_emit is None or time - self._last_emit >= self.every):
            return self.flush(frame, time)
        return []

    def flush(self, frame: Optional[int] = None, time: Optional[float] = None) -> List[dict]:
        if not self._pending:
            return []
        f, t = self._since
        ev = {"event": "dropped", "frame": f, "time": round(t, 4), "count": self._pending}
        if frame is not None and frame != f:
            ev["end_frame"], ev["end_time"] = frame, round(time, 4)
        self._pending, self._since = 0, None
        self._last_emit = t if time is None else time
        return [ev]


def end_events(closing: List[dict], summary: Optional[SegmentSummary], marks: Optional[StreamMarks]) -> List[dict]:
    """The last lines of a run's events: pending drops, the segments still open, the summary."""
    out = list(marks.flush() if marks is not None else [])
    out += closing
    if summary is not None:
        ev = summary.to_event()
        if marks is not None and marks.last is not None:  # the run's extent, for the timeline's axis
            ev["end_frame"], ev["end_time"] = marks.last[0], round(marks.last[1], 4)
        out.append(ev)
    return out
