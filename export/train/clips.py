"""How a training clip is cut and prepared, so that it matches what the runtime will feed.

* **Stride.** T frames with ``skip_frames`` dropped between them, exactly as the runtime's frame
  buffer stores them (one frame in ``skip_frames + 1``). Training takes one clip at a random
  temporal position per video and epoch; validation takes ``val_clips`` evenly spaced ones.
* **Frames.** Decoded by the runtime's own source (PyAV, BGR); validation frames go through the
  runtime's :class:`~actionnet.preprocess.FramePreparer` (the crop, resize and colour order the
  deployed model gets); training frames take a random crop around the same geometry, colour
  jitter and, only when allowed, a horizontal flip (it turns "swipe left" into "swipe right").
  Mean, std and value scale are not applied here: the model is trained wrapped in the export
  stage's :class:`~actionnet.export.onnx_export.RawClipModel`, the very arithmetic the ONNX graph
  holds. Training and deployment cannot drift apart.

Clips are uint8 ``[T, H, W, 3]`` in the model's colour order: cheap to pass between processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence

import cv2
import numpy as np

from actionnet.preprocess import FramePreparer, crop_box
from actionnet.spec import ModelSpec

from .data import Sample


@dataclass(frozen=True)
class Augment:
    """Action-safe augmentations. ``flip`` is off by default: it changes the meaning of many actions."""

    min_area: float = 0.5           # random resized crop: area fraction of the deployment crop
    aspect: float = 4.0 / 3.0       # aspect ratio jitter, [1/aspect, aspect]
    jitter: float = 0.3             # brightness, contrast and saturation: factor in [1-j, 1+j]
    flip: bool = False

    @classmethod
    def none(cls) -> "Augment":
        return cls(min_area=1.0, aspect=1.0, jitter=0.0, flip=False)


def clip_offsets(available: int, span: int, count: int) -> List[int]:
    """``count`` evenly spaced start offsets of a ``span``-frame window in ``available`` frames."""
    room = max(0, available - span)
    if count <= 1:
        return [room // 2]
    return [int(round(room * i / (count - 1))) for i in range(count)]


def frame_indices(sample: Sample, clip_length: int, skip_frames: int, offset: int) -> np.ndarray:
    """Video frame numbers of one clip starting ``offset`` frames after the sample's start. A video
    shorter than the clip repeats its last frame (the runtime would not classify it at all)."""
    step = skip_frames + 1
    last = (sample.end if sample.end is not None else sample.frames) - 1
    if sample.frames:
        last = min(last, sample.frames - 1)
    idx = sample.start + offset + step * np.arange(clip_length)
    return np.minimum(idx, max(sample.start, last))


def span(clip_length: int, skip_frames: int) -> int:
    return (clip_length - 1) * (skip_frames + 1) + 1


def available(sample: Sample) -> int:
    end = sample.end if sample.end is not None else sample.frames
    if sample.frames:
        end = min(end, sample.frames)
    return max(1, end - sample.start)


SEEK_AFTER = 48  # frames: below this, decoding from the start is cheaper than a seek


def read_frames(path: str, indices: Sequence[int]) -> List[np.ndarray]:
    """BGR frames at ``indices`` (repeats allowed); a video that ends early repeats its last frame.

    Decoded with PyAV and converted exactly as the runtime's video source does
    (``to_ndarray(format="bgr24")``). A clip far into a file seeks to the keyframe before it and
    counts frames from their timestamps (constant frame rate assumed, as the runtime's clock does);
    a stream without timestamps is decoded from the start.
    """
    import av

    from actionnet.errors import InputError
    from actionnet.sources import IMAGE_EXTENSIONS

    if path.lower().endswith(IMAGE_EXTENSIONS):  # a photo: one frame, repeated for every index
        import cv2

        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"cannot read image {path}")
        return [img] * len(indices)
    want = sorted(set(int(i) for i in indices))
    got = {}
    last = None
    try:
        with av.open(path) as c:
            st = c.streams.video[0]
            st.thread_type = "AUTO"
            rate = st.average_rate or st.guessed_rate
            t0 = st.start_time or 0
            seek = want[0] >= SEEK_AFTER and rate is not None and st.time_base is not None
            if seek:
                c.seek(t0 + int(want[0] / rate / st.time_base), stream=st, backward=True, any_frame=False)
            j, n = 0, -1
            for frame in c.decode(st):
                if seek:
                    if frame.pts is None:  # no timestamps after all: start over without seeking
                        return read_frames_from_start(path, indices)
                    n = int(round(float((frame.pts - t0) * st.time_base * rate)))
                else:
                    n += 1
                if n < want[j]:
                    continue
                img = frame.to_ndarray(format="bgr24")
                last = img
                while j < len(want) and want[j] <= n:
                    got[want[j]] = img
                    j += 1
                if j == len(want):
                    break
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"cannot decode {path}: {e}") from None
    if last is None:
        raise InputError(f"{path}: no frame at or after frame {want[0]}")
    return [got.get(int(i), last) for i in indices]


def read_frames_from_start(path: str, indices: Sequence[int]) -> List[np.ndarray]:
    """The reference: decode from frame 0 with the runtime's own source."""
    from actionnet.sources import open_source

    want = sorted(set(int(i) for i in indices))
    got, last, j = {}, None, 0
    with open_source(path) as src:
        for n, (frame, _) in enumerate(src):
            last = frame
            if n == want[j]:
                got[n] = frame
                j += 1
                if j == len(want):
                    break
    return [got.get(int(i), last) for i in indices]


class ClipMaker:
    """Frames -> one prepared uint8 clip [T, H, W, 3]; random per clip when training."""

    def __init__(self, spec: ModelSpec, augment: Augment):
        self.spec = spec
        self.augment = augment
        self.plain = augment == Augment.none()  # worked out once, not per clip
        self.prepare = FramePreparer(spec)

    def __call__(self, frames: Sequence[np.ndarray], rng=None) -> np.ndarray:
        s = self.spec
        out = np.empty((len(frames), s.height, s.width, 3), np.uint8)
        a = self.augment
        if rng is None or self.plain:
            for t, f in enumerate(frames):
                self.prepare(f, out[t])
            return out
        h, w = frames[0].shape[:2]
        y0, y1, x0, x1 = self._random_box(h, w, rng)
        flip = a.flip and rng.random() < 0.5
        for t, f in enumerate(frames):
            small = cv2.resize(f[y0:y1, x0:x1], (s.width, s.height), interpolation=cv2.INTER_AREA
                               if (y1 - y0) > s.height else cv2.INTER_LINEAR)
            if s.color_order == "RGB":
                small = small[..., ::-1]
            if flip:
                small = small[:, ::-1]
            out[t] = small
        if a.jitter > 0:
            out = self._jitter(out, rng)
        return out

    def _random_box(self, h, w, rng):
        s, a = self.spec, self.augment
        by0, by1, bx0, bx1 = crop_box(h, w, s.resize_mode, s.resize_size, s.height, s.width)
        area = (by1 - by0) * (bx1 - bx0) * rng.uniform(a.min_area, 1.0)
        ratio = math.exp(rng.uniform(-math.log(a.aspect), math.log(a.aspect))) * (bx1 - bx0) / (by1 - by0)
        cw = int(round(min(w, max(2, math.sqrt(area * ratio)))))
        ch = int(round(min(h, max(2, math.sqrt(area / ratio)))))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        return y0, y0 + ch, x0, x0 + cw

    def _jitter(self, clip, rng):
        j = self.augment.jitter
        b, c, sat = rng.uniform(1 - j, 1 + j, 3)
        x = clip.astype(np.float32)
        x *= b
        mean = x.mean()
        x = (x - mean) * c + mean
        grey = x.mean(axis=-1, keepdims=True)
        x = (x - grey) * sat + grey
        return np.clip(x, 0, 255).astype(np.uint8)


class ClipDataset:
    """A map-style dataset (works with torch's DataLoader and its worker processes).

    Training: ``clips_per_video`` items per video, each a random clip, new each epoch. Validation: ``val_clips`` items per
    video at evenly spaced positions. Items are fetched by ``(epoch, index)`` keys (:meth:`keys`);
    randomness comes from ``(seed, epoch, index)`` alone, so a
    run is the same whatever the number of workers, and a resumed run repeats an uninterrupted one.
    """

    def __init__(self, samples: Sequence[Sample], spec: ModelSpec, skip_frames: int, train: bool,
                 augment: Augment = Augment(), val_clips: int = 2, seed: int = 0, clips_per_video: int = 1):
        self.samples = list(samples)
        self.spec, self.skip_frames, self.train, self.seed = spec, skip_frames, train, seed
        self.maker = ClipMaker(spec, augment if train else Augment.none())
        self.span = span(spec.clip_length, skip_frames)
        per = clips_per_video if train else val_clips
        self.items = [(i, k) for i in range(len(self.samples)) for k in range(per)]
        self.val_clips = val_clips

    def __len__(self):
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.samples[i].label for i, _ in self.items], np.int64)

    def keys(self, epoch: int, order: Sequence[int]) -> List[tuple]:
        """Sampler keys ``(epoch, index)``: the epoch travels with each key, so persistent worker
        processes need no state from the main process."""
        return [(epoch, int(i)) for i in order]

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        i, k = self.items[index]
        s = self.samples[i]
        room = available(s) - self.span
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
            offset = int(rng.integers(0, max(0, room) + 1))
        else:
            rng = None
            offset = clip_offsets(available(s), self.span, self.val_clips)[k]
        frames = read_frames(s.path, frame_indices(s, self.spec.clip_length, self.skip_frames, offset))
        return self.maker(frames, rng), s.label
