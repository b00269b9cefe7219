"""Helpers for the training tests: a tiny backbone pretrained on the synthetic colour task."""

from __future__ import annotations

import numpy as np


def pretrain_colour(path: str, n: int = 640, epochs: int = 2, seed: int = 0) -> str:
    """Train ``tiny_net`` to tell red from blue squares (any direction, any speed) on in-memory
    clips and save its state dict: a backbone that knows colour, not direction."""
    import torch

    from actionnet.export.onnx_export import RawClipModel
    from actionnet.export.synthetic import CLIP_LENGTH, COLOURS, DIRECTIONS, render, test_model_spec, tiny_net

    rng = np.random.default_rng(seed)
    colours, dirs = list(COLOURS), list(DIRECTIONS)
    y = np.arange(n) % 2
    x = np.stack([render(colours[c], dirs[int(rng.integers(2))], rng.uniform(0.5, 2.5), CLIP_LENGTH,
                         square=int(rng.integers(5, 8)), rng=rng) for c in y])
    torch.manual_seed(seed)
    spec = test_model_spec(tuple(colours))
    model = RawClipModel(tiny_net(2), spec)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 32):
            idx = perm[i:i + 32]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt[:200]).argmax(1) == yt[:200]).float().mean())
    assert acc > 0.95, f"colour pretraining reached only {acc:.3f}"
    torch.save(model.model.state_dict(), path)
    return path
