"""CLIP's byte-level BPE tokenizer in plain Python (no torch, no regex, no tokenizers).

Written by hand rather than pulling in Hugging Face ``tokenizers`` (a 3 MB native wheel per
platform, not always built for Jetson's Python) or ``regex`` (needed only for ``\\p{L}``): the
whole algorithm is a hundred lines and runs once per label set at start-up. It reproduces
transformers' ``CLIPTokenizer`` step by step: NFC, whitespace runs to one space, per-character
lower case, the split ``<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|
[^\\s\\p{L}\\p{N}]+`` (whitespace dropped), bytes mapped to unicode symbols, BPE with ``</w>`` on
each word's last symbol, then ``<|startoftext|> ... <|endoftext|>``, truncated to the context
length (77) with the end token kept.

Not reproduced: ``ftfy`` clean-up, which OpenAI's original tokenizer applies (it straightens
curly quotes, for one); transformers no longer applies it either.
"""

from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

from .errors import ModelError

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# Unicode White_Space (what \s means in the Rust regex tokenizers uses)
WHITESPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                       + "".join(chr(c) for c in range(0x2000, 0x200B)))


@lru_cache(maxsize=1)
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable character table (CLIP uses the same)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _kind(c: str) -> str:
    if c in WHITESPACE:
        return "s"
    cat = unicodedata.category(c)[0]
    return "L" if cat == "L" else "N" if cat == "N" else "o"


def pre_tokenize(text: str) -> List[str]:
    """The words of ``text`` after normalisation, as CLIP's split pattern finds them."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if _kind(c) == "s" else c for c in text)  # \s+ -> " " (then dropped anyway)
    text = "".join(c.lower() for c in text)  # per character, as the Rust normaliser (no final-sigma rule)
    words, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        k = _kind(c)
        if k == "s":
            i += 1
            continue
        for special in (BOS, EOS):
            if text.startswith(special, i):
                words.append(special)
                i += len(special)
                break
        else:
            if c == "'":
                hit = next((t for t in CONTRACTIONS if text.startswith(t, i)), None)
                if hit:
                    words.append(hit)
                    i += len(hit)
                    continue
            if k == "N":
                words.append(c)
                i += 1
                continue
            j = i + 1
            while j < n and _kind(text[j]) == k:
                j += 1
            words.append(text[i:j])
            i = j
    return words


class ClipTokenizer:
    """``encode(text) -> ids`` with BOS/EOS; ``__call__(texts) -> [L, context] int64`` padded."""

    def __init__(self, vocab: Dict[str, int], merges: Sequence[str], context_length: int = 77):
        self.encoder = dict(vocab)
        self.ranks = {}
        for line in merges:
            line = line.strip()
            if not line or line.startswith("#version"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ModelError(f"tokenizer merges line {line!r} is not two symbols")
            self.ranks.setdefault((parts[0], parts[1]), len(self.ranks))
        for tok in (BOS, EOS):
            if tok not in self.encoder:
                raise ModelError(f"tokenizer vocabulary has no {tok}")
        self.bos, self.eos = self.encoder[BOS], self.encoder[EOS]
        self.unk = self.eos  # CLIPTokenizer's unknown token is <|endoftext|>
        self.context_length = context_length
        self.byte_map = bytes_to_unicode()
        self._cache: Dict[str, Tuple[int, ...]] = {BOS: (self.bos,), EOS: (self.eos,)}

    @classmethod
    def from_files(cls, vocab_path: str, merges_path: str, context_length: int = 77) -> "ClipTokenizer":
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            merges = f.read().splitlines()
        return cls(vocab, merges, context_length)

    def _bpe(self, word: str) -> Tuple[int, ...]:
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        symbols = [self.byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        while len(symbols) > 1:
            best, at = None, -1
            for k in range(len(symbols) - 1):
                r = self.ranks.get((symbols[k], symbols[k + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, k
            if best is None:
                break
            pair = (symbols[at], symbols[at + 1])
            merged, k = [], 0
            while k < len(symbols):  # merge every occurrence of the best pair, left to right
                if k < len(symbols) - 1 and (symbols[k], symbols[k + 1]) == pair:
                    merged.append(symbols[k] + symbols[k + 1])
                    k += 2
                else:
                    merged.append(symbols[k])
                    k += 1
            symbols = merged
        ids = tuple(self.encoder.get(s, self.unk) for s in symbols)
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> List[int]:
        ids: List[int] = []
        for w in pre_tokenize(text):
            ids.extend(self._bpe(w))
        return [self.bos] + ids[: self.context_length - 2] + [self.eos]

    def __call__(self, texts: Sequence[str]):
        """[len(texts), longest] int64 (at most the context length), padded with the end token: the
        text encoder pools at the first end token and its attention is causal, so padding never
        changes a result, and padding only to the longest prompt keeps start-up short."""
        import numpy as np

        rows = [self.encode(t) for t in texts]
        out = np.full((len(rows), max(len(r) for r in rows)), self.eos, np.int64)
        for i, ids in enumerate(rows):
            out[i, : len(ids)] = ids
        return out
