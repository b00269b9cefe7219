"""Offline X-CLIP fixtures: CLIP tokenizer files from the BPE vocabulary open_clip's wheel ships,
and small random ``XCLIPConfig`` models saved in the Hugging Face layout."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os

import pytest

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def bpe_vocab_path() -> str:
    """open_clip's copy of OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (found without importing
    open_clip, which would import torch and timm)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("open_clip_torch is needed for the X-CLIP tests' tokenizer files: "
                    "pip install --no-deps open_clip_torch")
    return os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")


def write_tokenizer_files(folder: str, max_merges: int = 49152 - 256 - 2) -> int:
    """vocab.json and merges.txt as OpenAI's CLIP builds them from the BPE file; returns the
    vocabulary size (``max_merges`` below the full 48894 gives a smaller vocabulary)."""
    from actionnet.cliptok import bytes_to_unicode

    lines = gzip.open(bpe_vocab_path()).read().decode("utf-8").split("\n")
    merges = lines[1:1 + max_merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(vocab)


def tiny_config(vocab_size: int, frames: int = 4, image: int = 32, patch: int = 16, width: int = 32,
                proj: int = 16):
    from transformers import XCLIPConfig

    text = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77)
    vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
                  image_size=image, patch_size=patch, num_frames=frames, mit_hidden_size=proj,
                  mit_intermediate_size=2 * proj, mit_num_hidden_layers=1, mit_num_attention_heads=2)
    return XCLIPConfig(text_config=text, vision_config=vision, projection_dim=proj,
                       prompt_layers=1, prompt_attention_heads=2, prompt_num_attention_heads=2)


def save_hf_folder(model, folder: str, image: int, max_merges: int = 2000) -> str:
    """``model`` (an XCLIPModel) with tokenizer and processor files, as the Hub lays them out."""
    model.save_pretrained(folder)
    write_tokenizer_files(folder, max_merges)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "VideoMAEImageProcessor", "processor_class": "XCLIPProcessor",
                   "do_resize": True, "size": {"shortest_edge": image}, "do_center_crop": True,
                   "crop_size": {"height": image, "width": image}, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": CLIP_MEAN,
                   "image_std": CLIP_STD, "resample": 2}, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
                   "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, f)
    return folder


# -- a tiny X-CLIP that knows something --------------------------------------------------

CAPTIONS = {f"{c} {d} slow": f"a {c} square moving {d}" for c in ("red", "blue") for d in ("left", "right")}


def train_tiny_xclip(folder: str, steps: int = 250, seed: int = 0, log=None, frames: int = 4, batch: int = 16,
                     lr: float = 5e-3, width: int = 32) -> str:
    """A tiny X-CLIP trained on synthetic clips (export/synthetic.py) against their captions:
    video-to-text softmax over the caption set, as X-CLIP is trained on class-name prompts.
    Saved in the Hugging Face layout; returns ``folder``."""
    import numpy as np
    import torch
    from transformers import CLIPTokenizer, XCLIPModel

    from actionnet.export.synthetic import SIZE, random_clip

    torch.manual_seed(seed)
    n = write_tokenizer_files(folder, 2000)
    cfg = tiny_config(n, frames=frames, image=SIZE, patch=8, width=width, proj=width)
    model = XCLIPModel(cfg)
    labels = tuple(CAPTIONS)
    captions = [CAPTIONS[k] for k in labels]
    tok = CLIPTokenizer.from_pretrained(folder)
    ids = tok(captions, padding=True, return_tensors="pt")
    x, y = clips(512, seed, labels, frames)
    mean, std = np.array(CLIP_MEAN, np.float32), np.array(CLIP_STD, np.float32)
    px = torch.from_numpy(((x.astype(np.float32) / 255 - mean) / std).transpose(0, 1, 4, 2, 3).copy())
    y = torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(px), (batch,), generator=g)
        out = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], pixel_values=px[idx])
        loss = torch.nn.functional.cross_entropy(out.logits_per_video, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and step % 50 == 0:
            print(f"xclip step {step}: loss {loss.item():.3f}", file=log)
    model.eval()
    save_hf_folder(model, folder, SIZE, 2000)
    return folder


def clips(n: int, seed: int, labels, frames: int):
    """Synthetic clips of ``frames`` frames (the square moves 2.5 to 3.5 px per frame, so that the
    direction shows within a few frames) and their label indices."""
    import numpy as np

    from actionnet.export.synthetic import render

    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(labels)
    rng.shuffle(y)
    x = np.stack([render(labels[i].split()[0], labels[i].split()[1], rng.uniform(2.5, 3.5), frames,
                         square=int(rng.integers(5, 8)), rng=rng) for i in y])
    return x, y.astype(np.int64)
