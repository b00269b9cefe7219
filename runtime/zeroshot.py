"""Zero-shot (open-vocabulary) action models: labels are text prompts chosen at run time.

An X-CLIP export (``actionnet-export xclip``) is two ONNX files side by side: the video side
``NAME.onnx`` (uint8 frames and one text embedding per label -> one score per label) and the text
encoder ``NAME.text.onnx`` (token ids -> embeddings), which also carries the CLIP tokenizer's
vocabulary and merges in its metadata. The user names only ``NAME.onnx``.

The text side runs once, when the label set is known; the embeddings are then bound to the video
engine (:class:`BoundTextEngine`), which from there on looks like any one-input action engine, so
the whole-frame and per-person run loops need nothing new.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .cliptok import ClipTokenizer
from .engines.base import Engine
from .errors import LabelError, ModelError
from .spec import ModelSpec, read_labels

TEXT_PREFIX = "actionnet.text."
LabelArg = Union[None, str, Sequence[str]]


def prompts_from(labels: LabelArg) -> Tuple[str, ...]:
    """The prompts in ``labels``: a label file (one prompt per line), one comma-separated value,
    or several values (one prompt each; commas kept)."""
    if labels is None:
        raise LabelError("this zero-shot model has no labels of its own; name the actions with --labels "
                         "(e.g. --labels \"dancing\" \"singing a song\", or a file with one prompt per line)")
    values = [labels] if isinstance(labels, str) else list(labels)
    if not values:
        raise LabelError("--labels holds no prompt")
    if len(values) == 1 and os.path.isfile(values[0]):
        prompts = [p.strip() for p in read_labels(values[0])]
        blank = [i + 1 for i, p in enumerate(prompts) if not p]
        if blank:
            raise LabelError(f"label file {values[0]} has an empty prompt on line {blank[0]}")
        return tuple(prompts)
    if len(values) == 1:
        prompts = [p.strip() for p in values[0].split(",")]
        prompts = [p for p in prompts if p]
        if not prompts:
            raise LabelError(f"--labels {values[0]!r} holds no prompt (empty, or only commas)")
        return tuple(prompts)
    prompts = [str(v).strip() for v in values]
    if not all(prompts):
        raise LabelError(f"--labels has an empty prompt (value {prompts.index('') + 1} of {len(prompts)})")
    return tuple(prompts)


def check_label_values(values: Optional[Sequence[str]]) -> None:
    """An empty ``--labels`` value, or one of only commas, is wrong whatever the model: said
    before the model is opened."""
    for i, v in enumerate(values or ()):
        if not v.strip().strip(",").strip(" ,"):
            what = f"--labels {v!r} holds no prompt (empty, or only commas)" if len(values) == 1 else \
                f"--labels has an empty prompt (value {i + 1} of {len(values)}: {v!r})"
            raise LabelError(what)


def fixed_labels(labels: LabelArg) -> Optional[Tuple[str, ...]]:
    """Labels for a fixed-label model: a label file (one value) or the class names themselves."""
    if labels is None:
        return None
    if isinstance(labels, str):
        return read_labels(labels)
    values = list(labels)
    if len(values) == 1:
        return read_labels(values[0])
    return tuple(values)


class TextEncoder:
    """The text-encoder ONNX and its tokenizer: ``encode(prompts) -> [L, D]`` float32."""

    def __init__(self, path: str, threads: Optional[int] = None):
        from .engines.onnxruntime import OnnxRuntimeEngine

        if not os.path.isfile(path):
            raise ModelError(f"the zero-shot model's text encoder {path} is missing; it must sit beside the model "
                             "(actionnet-export xclip writes both)")
        self.engine = OnnxRuntimeEngine(path, providers=["CPUExecutionProvider"], threads=threads)
        meta = self.engine.metadata
        try:
            vocab = json.loads(meta[TEXT_PREFIX + "vocab"])
            merges = meta[TEXT_PREFIX + "merges"].split("\n")
            context = int(meta[TEXT_PREFIX + "context_length"])
        except (KeyError, ValueError) as e:
            raise ModelError(f"{path} is not an actionnet text encoder (tokenizer metadata: {e})") from None
        self.tokenizer = ClipTokenizer(vocab, merges, context)

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        ids = self.tokenizer(prompts)
        return np.ascontiguousarray(self.engine.infer(ids), dtype=np.float32)

    def close(self) -> None:
        self.engine.close()


class BoundTextEngine(Engine):
    """The video engine with the label set's embeddings bound: one input (frames), like any
    action engine; ``embeddings`` can be swapped for another label set."""

    def __init__(self, inner: Engine, text_input: str, embeddings: np.ndarray):
        self.inner = inner
        self.text_input = text_input
        self.embeddings = embeddings
        super().__init__(inner.path, (inner.input,), inner.outputs, inner.metadata)
        self.name = inner.name

    def _run(self, feeds, outputs):
        feeds = dict(feeds)
        feeds[self.text_input] = self.embeddings
        return self.inner._run(feeds, outputs)

    def __getattr__(self, item):  # providers, device, ... of the engine underneath
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def close(self) -> None:
        self.inner.close()


def bind_labels(eng: Engine, spec: ModelSpec, labels: LabelArg, threads: Optional[int] = None,
                log=sys.stderr) -> Tuple[Engine, ModelSpec]:
    """Embed the prompts once and bind them to ``eng``; the spec gets the prompts as labels."""
    prompts = prompts_from(labels)
    if eng.input.name == spec.text_input or len(eng.inputs) != 2:
        raise ModelError(f"{eng.path} is marked zero-shot but does not take frames and {spec.text_input!r} "
                         f"(its inputs: {', '.join(i.name for i in eng.inputs)})")
    want = eng.input_info(spec.text_input)
    path = os.path.join(os.path.dirname(os.path.abspath(eng.path)), spec.text_encoder)
    t0 = time.perf_counter()
    text = TextEncoder(path, threads)
    try:
        emb = text.encode(prompts)
    finally:
        text.close()
    if emb.shape != (len(prompts), spec.embed_dim) or (isinstance(want.shape[-1], int) and want.shape[-1] != emb.shape[1]):
        raise ModelError(f"text encoder {path} gives embeddings of shape {list(emb.shape)}; the model's "
                         f"{spec.text_input!r} wants {list(want.shape)}")
    if log is not None:
        print(f"actionnet: {len(prompts)} prompts encoded in {1000 * (time.perf_counter() - t0):.0f} ms "
              f"(text encoder {os.path.basename(path)})", file=log)
    return BoundTextEngine(eng, spec.text_input, emb.astype(want.dtype, copy=False)), spec.replace(labels=prompts)


def split_trailing_paths(labels: Optional[List[str]], inputs: List[Optional[str]]) -> Tuple[Optional[List[str]], List[Optional[str]]]:
    """``--labels a b in.mp4 out.mp4``: argparse hands the positionals written after the prompts to
    ``--labels``. Values at the end that look like an input or output (an existing path, a URL, a
    file name with a video or image extension, a device) go back to the positionals left empty."""
    free = [i for i, v in enumerate(inputs) if v is None]
    if not labels or not free or (free[0] == 0 and inputs[1] is not None):
        return labels, inputs
    labels = list(labels)
    moved: List[str] = []
    while labels and len(moved) < len(free) and len(labels) > 1 and _looks_like_path(labels[-1]):
        moved.insert(0, labels.pop())
    out = list(inputs)
    for i, v in zip(free, moved):
        out[i] = v
    return labels, out


_MEDIA = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".flv", ".m4v", ".ts", ".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _looks_like_path(v: str) -> bool:
    low = v.lower()
    return (os.path.exists(v) or "://" in v or low.startswith("/dev/") or "%" in v or "*" in v
            or low.endswith(_MEDIA))
