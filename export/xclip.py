"""``actionnet-export xclip SOURCE``: Hugging Face X-CLIP -> zero-shot ONNX (labels at run time).

SOURCE is a Hub name (``microsoft/xclip-base-patch32``, fetched through the zoo's download) or a
local folder in the Hub layout (config.json, weights, vocab.json + merges.txt or tokenizer.json,
preprocessor_config.json). Two files are written:

* ``OUT.onnx``, the video side: uint8 frames ``[N, T, H, W, 3]`` and text embeddings ``[L, D]``
  -> ``[N, L]`` logits. It holds everything that depends on the video: the vision encoder with
  its cross-frame messages, the multi-frame integration transformer, the prompt generator that
  adds video-conditioned context to each text embedding, and the logit scale. Frame
  normalisation is in the graph, as for every actionnet model.
* ``OUT.text.onnx``, the text side: token ids ``[L, 77]`` -> embeddings ``[L, D]``, with the CLIP
  tokenizer's vocabulary and merges in its metadata. It runs once per label set at start-up.

With ``--labels`` the text embeddings are computed here and folded into the video side as
constants: one ordinary fixed-label model (one input), which every engine runs, INT8 included.
Either way ONNX Runtime is compared with transformers' ``XCLIPModel`` before anything is written.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import List, Sequence

import numpy as np

from actionnet import files
from actionnet.errors import ModelError, UsageError
from actionnet.spec import ModelSpec

HELP = "export a Hugging Face X-CLIP model (Hub name or folder) to zero-shot ONNX: labels given at run time"
HF_ENDPOINT = "https://huggingface.co"
# Hub files: (name, required). Weights: the first of the two that exists.
HUB_FILES = (("config.json", True), ("preprocessor_config.json", False), ("vocab.json", False),
             ("merges.txt", False), ("tokenizer.json", False), ("tokenizer_config.json", False),
             ("special_tokens_map.json", False))
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PARITY_PROMPTS = ("a person dancing", "a person playing guitar", "cooking in a kitchen")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPSET = 17


def add_arguments(p) -> None:
    p.add_argument("source", help="Hub name (owner/name) or a local folder in the Hugging Face layout")
    p.add_argument("--output", required=True, help="ONNX file to write (the text encoder goes beside it as NAME.text.onnx)")
    p.add_argument("--labels", nargs="+", metavar="PROMPT",
                   help="fold these prompts in (a label file, prompts, or one comma-separated value): "
                        "a fixed-label model any engine runs, no text encoder")
    p.add_argument("--no-parity", action="store_true", help="write even when ONNX Runtime and transformers disagree")


def run(args) -> int:
    report = export_xclip(args.source, args.output, labels=args.labels, check_parity=not args.no_parity)
    print(f"actionnet-export: wrote {args.output}" + ("" if args.labels else f" and {text_path(args.output)}"),
          file=sys.stderr)
    return 0 if report.ok else 1


def text_path(output: str) -> str:
    root, _ = os.path.splitext(output)
    return root + ".text.onnx"


# -- the source --------------------------------------------------------------------------

def hub_download(name: str, folder: str, log=sys.stderr) -> str:
    """The Hub repository ``name`` in ``folder``, each file through the zoo's download (temporary
    file, sha256 printed, moved into place when whole). ``ACTIONNET_HF_ENDPOINT`` or
    ``HF_ENDPOINT`` point to a mirror."""
    from actionnet.errors import ZooError
    from actionnet.zoo import fetch

    base = (os.environ.get("ACTIONNET_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT).rstrip("/")
    os.makedirs(folder, exist_ok=True)

    def get(file: str, required: bool, loud: bool = False) -> bool:
        if os.path.isfile(os.path.join(folder, file)):
            return True
        url = f"{base}/{name}/resolve/main/{file}"
        try:
            fetch(f"{name}/{file}", {"url": url}, folder, log if required or loud else _Quiet(log))
            return True
        except ZooError:
            if required:
                raise
            return False

    for file, required in HUB_FILES:
        get(file, required)
    if not any(get(w, False, loud=True) for w in WEIGHT_FILES):
        raise ModelError(f"{name}: no weights ({' or '.join(WEIGHT_FILES)}) at {base}/{name}")
    return folder


class _Quiet:
    """A log that drops the download line of optional files (most repositories lack some)."""

    def __init__(self, log):
        self.log = log

    def write(self, s):
        if "sha256" in s:
            self.log.write(s)

    def flush(self):
        pass


def resolve_source(source: str, log=sys.stderr) -> str:
    if os.path.isdir(source):
        return source
    if os.path.exists(source):
        raise UsageError(f"{source} is a file; SOURCE is a Hugging Face folder or a Hub name (owner/name)")
    parts = source.split("/")
    if len(parts) == 2 and all(parts):
        from actionnet.zoo import cache_dir

        return hub_download(source, os.path.join(cache_dir(), "hub", source.replace("/", "--")), log)
    raise UsageError(f"{source} is neither a folder nor a Hub name (owner/name)")


def read_config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError:
        raise ModelError(f"{folder} is not a Hugging Face model folder: no config.json") from None
    except ValueError as e:
        raise ModelError(f"{path} is not valid JSON ({e})") from None
    if cfg.get("model_type") != "xclip":
        raise ModelError(f"{folder} holds a {cfg.get('model_type') or 'model without model_type'!r} model, "
                         "not X-CLIP (config.json model_type 'xclip')")
    return cfg


def read_tokenizer(folder: str):
    """(vocab dict, merges lines): vocab.json + merges.txt, else tokenizer.json's BPE model."""
    v, m = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    if os.path.isfile(v) and os.path.isfile(m):
        with open(v, encoding="utf-8") as f:
            vocab = json.load(f)
        with open(m, encoding="utf-8") as f:
            merges = [line for line in f.read().splitlines() if line and not line.startswith("#version")]
        return vocab, merges
    t = os.path.join(folder, "tokenizer.json")
    if os.path.isfile(t):
        with open(t, encoding="utf-8") as f:
            model = json.load(f).get("model", {})
        merges = [" ".join(x) if isinstance(x, list) else x for x in model.get("merges", [])]
        if model.get("vocab") and merges:
            return model["vocab"], merges
    raise ModelError(f"{folder} has no CLIP tokenizer files (vocab.json and merges.txt, or tokenizer.json)")


def xclip_spec(folder: str, cfg: dict, labels: Sequence[str], text_file: str = "") -> ModelSpec:
    """Preprocessing from the folder's processor config (VideoMAEImageProcessor: shortest side,
    centre crop, x/255, CLIP mean and std; RGB) and the frame count from the vision config."""
    pp = {}
    path = os.path.join(folder, "preprocessor_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            pp = json.load(f)
    vision = cfg.get("vision_config", {})
    image = int(vision.get("image_size", 224))
    crop = pp.get("crop_size", image)
    ch, cw = (crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop), int(crop))
    size = pp.get("size", {"shortest_edge": ch})
    short = size.get("shortest_edge", ch) if isinstance(size, dict) else int(size)
    if (ch, cw) != (image, image):
        raise ModelError(f"{folder}: processor crop {ch}x{cw} does not match the vision model's {image}x{image}")
    scale = pp.get("rescale_factor", 1 / 255)
    return ModelSpec(
        labels=tuple(labels), clip_length=int(vision.get("num_frames", 8)), height=ch, width=cw,
        input_name="frames", output_name="logits", layout="raw_nthwc", color_order="RGB",
        resize_mode="short_side", resize_size=(int(short),), value_scale=float(round(1.0 / scale, 6)),
        mean=tuple(pp.get("image_mean", CLIP_MEAN)), std=tuple(pp.get("image_std", CLIP_STD)),
        arch=f"xclip:{cfg.get('_name_or_path') or os.path.basename(os.path.abspath(folder))}",
        output_kind="logits",
        text_input="" if labels else "text_embeds", text_encoder="" if labels else text_file,
        embed_dim=None if labels else int(cfg.get("projection_dim", 512)),
    )


# -- the graphs --------------------------------------------------------------------------

def _modules():
    import torch
    from torch import nn

    class TextSide(nn.Module):
        """token ids [L, S] -> projected text embeddings [L, D] (XCLIPModel.get_text_features)."""

        def __init__(self, model):
            super().__init__()
            self.text_model, self.text_projection = model.text_model, model.text_projection

        def forward(self, input_ids):
            return self.text_projection(self.text_model(input_ids=input_ids).pooler_output)

    class VideoSide(nn.Module):
        """uint8 [N, T, H, W, 3] + text embeddings [L, D] -> logits [N, L]: XCLIPModel.forward
        from pixel values on, with the text encoder's output as an input."""

        def __init__(self, model, spec: ModelSpec):
            super().__init__()
            self.m = model
            std = torch.tensor(spec.std, dtype=torch.float32)
            self.register_buffer("scale", (1.0 / (spec.value_scale * std)).view(1, 1, 1, 1, 3))
            self.register_buffer("shift", (-torch.tensor(spec.mean, dtype=torch.float32) / std).view(1, 1, 1, 1, 3))

        def forward(self, frames, text_embeds):
            m = self.m
            x = frames.float() * self.scale + self.shift
            n, t, h, w, c = x.shape
            x = x.permute(0, 1, 4, 2, 3).reshape(n * t, c, h, w)
            vision = m.vision_model(pixel_values=x)
            video = m.visual_projection(vision.pooler_output).view(n, t, -1)
            video = m.mit(video).pooler_output
            img = m.prompts_visual_layernorm(vision.last_hidden_state[:, 1:, :]) @ m.prompts_visual_projection
            img = img.view(n, t, -1, video.shape[-1]).mean(dim=1)
            text = text_embeds.unsqueeze(0).expand(n, -1, -1)
            text = text + m.prompts_generator(text, img)
            video = video / video.norm(p=2, dim=-1, keepdim=True)
            text = text / text.norm(p=2, dim=-1, keepdim=True)
            return torch.einsum("bd,bkd->bk", video, m.logit_scale.exp() * text)

    class FixedVideo(nn.Module):
        """The video side with the label set's embeddings folded in as a constant."""

        def __init__(self, video: "VideoSide", embeds):
            super().__init__()
            self.video = video
            self.register_buffer("embeds", embeds)

        def forward(self, frames):
            return self.video(frames, self.embeds)

    return TextSide, VideoSide, FixedVideo


def sample_frames(spec: ModelSpec, n: int = 2, seed: int = 0) -> np.ndarray:
    from .onnx_export import sample_clips

    return sample_clips(spec, n, seed)


def reference_logits(model, folder: str, frames: np.ndarray, prompts: Sequence[str], spec: ModelSpec) -> np.ndarray:
    """transformers' own path: its CLIPTokenizer and XCLIPModel on the frames normalised as the
    processor does (frames already at the crop size, so resize and crop are no-ops)."""
    import torch
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(folder)
    ids = tok(list(prompts), padding=True, truncation=True, max_length=77, return_tensors="pt")
    x = (frames.astype(np.float32) / spec.value_scale - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    pixel = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
    with torch.no_grad():
        out = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], pixel_values=pixel)
    return out.logits_per_video.float().numpy()


def _export(module, args, path, input_names, output_names, dynamic_axes) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, dynamo=False, opset_version=OPSET, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes)


def export_xclip(source: str, output: str, labels=None, check_parity: bool = True, log=None, parity_clips: int = 2):
    """Export the X-CLIP model at ``source``; returns the parity report (see module docstring)."""
    import onnx
    import torch

    from actionnet.cliptok import ClipTokenizer
    from actionnet.zeroshot import TEXT_PREFIX, prompts_from

    from .custom import add_metadata

    log = log or sys.stderr
    prompts = prompts_from(labels) if labels else ()
    folder = resolve_source(source, log)
    cfg = read_config(folder)
    vocab, merges = read_tokenizer(folder)
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise ModelError(f"cannot write {output}: folder {out_dir} does not exist")
    tpath = text_path(output)
    spec = xclip_spec(folder, cfg, prompts, os.path.basename(tpath))
    try:
        from transformers import XCLIPModel
    except ImportError:
        from actionnet.errors import MissingLibraryError

        raise MissingLibraryError("transformers is not installed: pip install 'actionnet[export]'") from None
    try:
        model = XCLIPModel.from_pretrained(folder).eval()
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load X-CLIP weights from {folder}: {str(e).splitlines()[0]}") from None
    context = int(cfg.get("text_config", {}).get("max_position_embeddings", 77))
    tokenizer = ClipTokenizer(vocab, merges, context)
    TextSide, VideoSide, FixedVideo = _modules()
    text, video = TextSide(model).eval(), VideoSide(model, spec).eval()
    frames = sample_frames(spec, parity_clips)
    check_prompts = prompts or PARITY_PROMPTS
    ids = tokenizer(check_prompts)
    with torch.no_grad():
        embeds = text(torch.from_numpy(ids))
    tmp_files: List[str] = []

    def tmp() -> str:
        fd, p = files.mkstemp(out_dir, prefix=".export-", suffix=".onnx")
        os.close(fd)
        tmp_files.append(p)
        return p

    try:
        import onnxruntime as ort

        vid_tmp = tmp()
        if prompts:
            _export(FixedVideo(video, embeds).eval(), (torch.from_numpy(frames[:1]),), vid_tmp, ["frames"], ["logits"],
                    {"frames": {0: "N"}, "logits": {0: "N"}})
        else:
            _export(video, (torch.from_numpy(frames[:1]), embeds), vid_tmp, ["frames", "text_embeds"], ["logits"],
                    {"frames": {0: "N"}, "text_embeds": {0: "L"}, "logits": {0: "N", 1: "L"}})
            txt_tmp = tmp()
            _export(text, (torch.from_numpy(ids),), txt_tmp, ["input_ids"], ["text_embeds"],
                    {"input_ids": {0: "L", 1: "S"}, "text_embeds": {0: "L"}})
            tm = onnx.load(txt_tmp)
            for k, v in {"actionnet.spec_version": "1", "actionnet.task": "text", TEXT_PREFIX + "vocab": json.dumps(vocab, ensure_ascii=False),
                         TEXT_PREFIX + "merges": "\n".join(merges), TEXT_PREFIX + "context_length": str(context),
                         TEXT_PREFIX + "embed_dim": str(spec.embed_dim)}.items():
                tm.metadata_props.add(key=k, value=v)
            onnx.checker.check_model(tm, full_check=True)
            onnx.save(tm, txt_tmp)
        m = add_metadata(vid_tmp, spec)
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, vid_tmp)
        # parity: transformers' tokenizer + XCLIPModel against the runtime's tokenizer + the ONNX pair
        ref = reference_logits(model, folder, frames, check_prompts, spec)
        sess = ort.InferenceSession(vid_tmp, providers=["CPUExecutionProvider"])
        if prompts:
            got = sess.run(["logits"], {"frames": frames})[0]
        else:
            tsess = ort.InferenceSession(txt_tmp, providers=["CPUExecutionProvider"])
            emb = tsess.run(None, {"input_ids": ids})[0]
            got = sess.run(["logits"], {"frames": frames, "text_embeds": emb})[0]
        report = _report(ref, got)
        print(f"actionnet-export: {report} (transformers XCLIPModel, {len(check_prompts)} prompts)", file=log)
        if check_parity and not report.ok:
            raise ModelError(f"parity broken, {output} not written: {report}")
        if not prompts:
            os.replace(txt_tmp, tpath)
        os.replace(vid_tmp, output)
        return report
    finally:
        for p in tmp_files:
            if os.path.exists(p):
                os.remove(p)


def _report(ref: np.ndarray, got: np.ndarray, rtol: float = 1e-3):
    from .onnx_export import parity_report

    return parity_report(ref, got, rtol)
