"""``--network`` names: manifest -> local cache -> download (sha256-checked) -> clear offline error.

The manifest is ``models/zoo.json`` (``ACTIONNET_ZOO`` points elsewhere, e.g. a private mirror).
Files live under ``$ACTIONNET_HOME`` (default ``~/.cache/actionnet``), one folder per network.
Downloads go to a temporary file, are hashed while they stream, and are moved into place only
when the checksum holds, so an interrupted or tampered download never poses as a model.

An ONNX archive may bring its own label list (jetson-inference's ``labels.txt``); it is used only
when its line count equals the model's outputs, else the shipped list in ``models/labels``, else
one error naming the file to fix (see :func:`choose_labels`).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from typing import Callable, Dict, List, Optional, Union

from . import files
from .engines.onnxmeta import _fields
from .errors import LabelError, ZooError
from .home import cache_dir
from .spec import read_labels

# What ``actionnet.export.xclip`` loads from a Hub repository (a test keeps the two in step):
# named in the offline message, so that a user fetches every file, not just the first one missed.
HUB_FILES = ("config.json", "model.safetensors or pytorch_model.bin", "vocab.json", "merges.txt", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json")


class DownloadError(ZooError):
    """A download that did not arrive (no network, refused, 404); ``reason`` says why, so that a
    caller fetching one file of a larger whole can name the whole in its offline message."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def manifest_path() -> str:
    if os.environ.get("ACTIONNET_ZOO"):
        return os.environ["ACTIONNET_ZOO"]
    from actionnet.models import MANIFEST

    return MANIFEST


def load_manifest(path: Optional[str] = None) -> Dict[str, dict]:
    path = path or manifest_path()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ZooError(f"cannot read model zoo manifest {path}: {e}") from None
    return {k: v for k, v in data.items() if not k.startswith("_")}


class ZooEntry:
    """A resolved network: its model file, label file, blob names and input spec.

    ``labels_path`` may be given as a callable, chosen (and checked) only when first read: a user
    who passes ``--labels`` never reads it, so a zoo list that does not fit the model cannot stand
    in the way of the very file that fixes it."""

    def __init__(self, name: str, model_path: str, labels_path: Union[None, str, Callable[[], Optional[str]]],
                 input_blob: Optional[str] = None, output_blob: Optional[str] = None,
                 spec_overrides: Optional[Dict] = None):
        self.name, self.model_path = name, model_path
        self._labels = labels_path
        self.input_blob, self.output_blob = input_blob, output_blob
        self.spec_overrides = dict(spec_overrides or {})

    @property
    def labels_path(self) -> Optional[str]:
        if callable(self._labels):
            self._labels = self._labels()
        return self._labels


def find(name: str, manifest: Dict[str, dict]) -> str:
    key = name.lower()
    for k, v in manifest.items():
        if key == k or key in v.get("aliases", ()):
            return k
    raise ZooError(f"unknown network {name!r}; known networks: {', '.join(manifest)} (or pass --model FILE)")


def labels_file(entry: dict) -> Optional[str]:
    lab = entry.get("labels")
    if not lab:
        return None
    if os.path.isabs(lab):
        return lab
    from actionnet.models import LABELS

    return os.path.join(LABELS, lab)


def resolve(name: str, cache: Optional[str] = None, manifest: Optional[str] = None, download: bool = True,
            log=None) -> ZooEntry:
    """The local files for network ``name``, fetching them when they are not cached."""
    log = log or sys.stderr
    m = load_manifest(manifest)
    key = find(name, m)
    e = m[key]
    folder = os.path.join(cache or cache_dir(), key)
    fmt = e.get("format", "onnx")
    if fmt not in ("onnx", "torchvision", "xclip", "stream"):
        raise ZooError(f"network {key}: unknown format {fmt!r} in the manifest")
    model = next((p for p in candidates(key, e, folder) if os.path.isfile(p)), None)
    if model is None and fmt in ("torchvision", "stream"):  # a weights file, exported once
        model = candidates(key, e, folder)[0]
        weights = _weights_path(e, folder)
        if weights and os.path.isfile(weights):  # put there by hand (offline), or an export cut short
            if e.get("sha256") or e.get("sha256_prefix"):
                _check_sha256(key, e, _sha256_file(weights), weights, "replace it with the published file")
        else:
            if not download:
                raise ZooError(_offline_message(key, e, folder, "downloads disabled"))
            weights = fetch(key, e, folder, log)
        (_export_torchvision if fmt == "torchvision" else _export_stream)(key, e, weights, model, log)
    elif model is None:
        if not download:
            raise ZooError(_offline_message(key, e, folder, "downloads disabled"))
        if fmt == "xclip":  # a Hub repository, exported once (zero-shot, labels at run time)
            _export_xclip(key, e, folder, candidates(key, e, folder)[0], log)
        else:
            fetch(key, e, folder, log)
        model = next((p for p in candidates(key, e, folder) if os.path.isfile(p)), None)
        if model is None:
            raise ZooError(f"network {key}: the download did not contain {e.get('file')}")
    spec = dict(e.get("spec", {}))
    for k in ("mean", "std", "resize_size"):
        if k in spec:
            spec[k] = tuple(spec[k])
    labels = labels_file(e)
    if fmt == "onnx":  # a foreign model: nothing inside it says which list fits
        labels = lambda: choose_labels(key, e, folder, model, log)  # noqa: E731
    return ZooEntry(key, model, labels, e.get("input_blob"), e.get("output_blob"), spec)


def choose_labels(key: str, e: dict, folder: str, model: str, log) -> Optional[str]:
    """The label file of ONNX network ``key``: the archive's own list when its line count equals
    the model's outputs, else the shipped list when that does, else a LabelError naming the file
    to fix.

    jetson-inference reads its archive's ``labels.txt`` and refuses a count mismatch; its docs say
    1040 classes where the checkpoints have 1039 outputs, so an archive list of another length
    must not win over the shipped one that fits. When the model's output size cannot be read
    (a dynamic dimension), the shipped list is taken and the runtime's own check speaks."""
    shipped = labels_file(e)
    archived = _archive_labels(e, folder, model)
    n = output_count(model, e.get("output_blob"))
    if n is None or not (shipped or archived):
        return shipped or archived
    have = {}
    for path in filter(None, (archived, shipped)):
        try:
            have[path] = len(read_labels(path))
        except LabelError:
            if path == shipped:
                raise
            have[path] = 0  # an unreadable or empty archive list fits nothing
    if archived and have[archived] == n:
        return archived
    if shipped and have[shipped] == n:
        if archived:
            print(f"actionnet: {key}: {archived} has {have[archived]} lines but the model has {n} outputs; "
                  f"using the shipped list {shipped} ({n} classes)", file=log)
        return shipped
    fix = shipped or archived
    found = ", ".join(f"{p} has {c} lines" for p, c in have.items())
    raise LabelError(f"network {key}: no label list fits the model's {n} outputs ({found}); fix {fix} "
                     f"(one class name per line, {n} lines) or pass --labels FILE")


def _archive_labels(e: dict, folder: str, model: str) -> Optional[str]:
    """The archive's own label list (``archive_labels`` in the manifest) where it was extracted,
    or beside a model file copied flat into the network's folder; None when absent."""
    rel = e.get("archive_labels")
    if not rel:
        return None
    nested = os.path.join(folder, *rel.split("/"))
    beside = os.path.join(os.path.dirname(model), os.path.basename(rel))
    return next((p for p in (nested, beside) if os.path.isfile(p)), None)


def output_count(path: str, name: Optional[str] = None) -> Optional[int]:
    """The last dimension (the class count) of output ``name`` (else the first output) as the
    ONNX file at ``path`` declares it; None when it is not a fixed number or the file is not
    readable ONNX. Read without the onnx package or an engine, through a memory map: the walk
    skips the weights by length, so a 250 MB model costs a few pages, not a full read."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _declared_output_dim(memoryview(mm), name)
    except (OSError, ValueError, BufferError):
        return None


def _declared_output_dim(buf: memoryview, name: Optional[str]) -> Optional[int]:
    # ModelProto.graph = 7; GraphProto.output = 12; ValueInfoProto name = 1, type = 2;
    # TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2; TensorShapeProto.dim = 1; dim_value = 1
    def sub(msg, number):
        return [v for f, w, v in _fields(msg) if f == number and w == 2]

    try:
        for graph in sub(buf, 7):
            for out in sub(graph, 12):
                if name is not None and [bytes(v).decode("utf-8") for v in sub(out, 1)] != [name]:
                    continue
                dims = [d for t in sub(out, 2) for tensor in sub(t, 1) for shape in sub(tensor, 2)
                        for d in sub(shape, 1)]
                value = [v for f, w, v in _fields(dims[-1]) if f == 1 and w == 0] if dims else []
                return value[0] if value and value[0] > 0 else None
        return None
    except (ValueError, UnicodeDecodeError):
        return None


def candidates(key: str, e: dict, folder: str) -> List[str]:
    """Where the model file of network ``key`` may lie in its cache folder, in order.

    An archive's model sits in the archive's own folder (``resnet-18/Action-ResNet18/x.onnx``);
    a user who copies just the file into the network's folder (``resnet-18/x.onnx``) meant the
    same thing, so both are accepted. A torchvision network's model is its exported ONNX."""
    if e.get("format", "onnx") in ("torchvision", "xclip", "stream"):
        return [os.path.join(folder, f"{key}.onnx")]
    if not e.get("file"):  # a single download (a Hub file): it lands under its URL's name
        return [os.path.join(folder, os.path.basename((e.get("url") or key).split("?")[0]))]
    nested = os.path.join(folder, *e["file"].split("/"))
    flat = os.path.join(folder, os.path.basename(e["file"]))
    return [nested] if flat == nested else [nested, flat]


def _weights_path(e: dict, folder: str) -> Optional[str]:
    """Where a downloaded (or hand-copied) single-file payload lies: the URL's file name."""
    url = e.get("url")
    return os.path.join(folder, os.path.basename(url.split("?")[0])) if url else None


def fetch(key: str, e: dict, folder: str, log) -> str:
    """Download ``e['url']`` into ``folder`` (extracting archives); returns the payload path."""
    url = e.get("url")
    if not url:
        raise ZooError(_offline_message(key, e, folder, "the manifest has no download address for it"))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = files.mkstemp(folder, prefix=".download-")
    h = hashlib.sha256()
    try:
        print(f"actionnet: downloading {key} from {url}", file=log)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as r:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as err:
            # an HTTP error keeps its status ("HTTP Error 404: Not Found"), others their reason
            reason = str(err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", None) or err)
            raise DownloadError(_offline_message(key, e, folder, reason), reason) from None
        digest = h.hexdigest()
        if not _check_sha256(key, e, digest, url, "the file was discarded"):
            print(f"actionnet: {key}: no checksum is published for this file; sha256 of the download: {digest}",
                  file=log)
        archive = e.get("archive")
        if archive:
            _extract(tmp, archive, folder, key)
            return folder
        dest = _weights_path(e, folder)
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_sha256(key: str, e: dict, digest: str, what: str, outcome: str) -> bool:
    """Refuse ``digest`` when the manifest's sha256 (or torchvision's prefix) says otherwise;
    False when the manifest publishes no checksum to check against."""
    want, prefix = e.get("sha256"), e.get("sha256_prefix")
    if want and digest != want.lower():
        raise ZooError(f"network {key}: checksum mismatch for {what}: sha256 {digest}, expected {want}; {outcome}")
    if prefix and not digest.startswith(prefix.lower()):
        raise ZooError(f"network {key}: checksum mismatch for {what}: sha256 {digest} does not start with "
                       f"{prefix}; {outcome}")
    return bool(want or prefix)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract(path: str, kind: str, folder: str, key: str) -> None:
    root = os.path.realpath(folder)
    try:
        if kind in ("tar.gz", "tgz", "tar"):
            with tarfile.open(path) as t:
                members = t.getmembers()
                for m in members:
                    target = os.path.realpath(os.path.join(folder, m.name))
                    if not target.startswith(root + os.sep) or m.issym() or m.islnk() or m.isdev():
                        raise ZooError(f"network {key}: archive member {m.name!r} is unsafe; not extracted")
                t.extractall(folder, members=members)
        elif kind == "zip":
            with zipfile.ZipFile(path) as z:
                for n in z.namelist():
                    if not os.path.realpath(os.path.join(folder, n)).startswith(root + os.sep):
                        raise ZooError(f"network {key}: archive member {n!r} is unsafe; not extracted")
                z.extractall(folder)
        else:
            raise ZooError(f"network {key}: unknown archive type {kind!r}")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise ZooError(f"network {key}: the downloaded archive is corrupt ({err})") from None


def _export_torchvision(key: str, e: dict, weights: str, out: str, log) -> None:
    try:
        from actionnet.export.torchvision_models import export_torchvision
    except ImportError:
        raise ZooError(f"network {key} is a torchvision checkpoint and needs the export stage once: "
                       f"pip install 'actionnet[export]', or run actionnet-export action --arch {e['arch']} "
                       f"--weights {weights} --output {key}.onnx elsewhere and pass --model {key}.onnx") from None
    print(f"actionnet: exporting {key} to {out} (once)", file=log)
    export_torchvision(e["arch"], weights, out, labels=labels_file(e))


def _export_xclip(key: str, e: dict, folder: str, out: str, log) -> None:
    try:
        from actionnet.export.xclip import export_xclip, hub_download
    except ImportError:
        raise ZooError(f"network {key} is a Hugging Face X-CLIP model and needs the export stage once: "
                       f"pip install 'actionnet[export]', or run actionnet-export xclip {e['hub']} --output {key}.onnx "
                       f"elsewhere and pass --model {key}.onnx (with {key}.text.onnx beside it)") from None
    try:
        hf = hub_download(e["hub"], os.path.join(folder, "hf"), log)
    except DownloadError as err:  # name the repository and all it needs, not the one file missed
        raise ZooError(_offline_message(key, e, folder, err.reason)) from None
    print(f"actionnet: exporting {key} to {out} (once)", file=log)
    export_xclip(hf, out, log=log)

def _export_stream(key: str, e: dict, weights: str, out: str, log) -> None:
    """A streaming model's weights (MoViNet-pytorch's stream state dicts) -> ONNX with its state
    contract, once, with the export stage's stepped parity check."""
    try:
        from actionnet.export.stream import export_stream
    except ImportError:
        raise ZooError(f"network {key} is a PyTorch checkpoint and needs the export stage once: "
                       f"pip install 'actionnet[export]', or run actionnet-export stream --arch {e['arch']} "
                       f"--weights {weights} --output {key}.onnx elsewhere and pass --model {key}.onnx") from None
    print(f"actionnet: exporting {key} to {out} (once)", file=log)
    export_stream(e["arch"], weights, out, labels=labels_file(e), size=e.get("size"), log=log)


def _offline_message(key: str, e: dict, folder: str, reason: str) -> str:
    """What to fetch, and the exact path(s) to put it at, for a machine without internet access.

    Each kind of entry gets its own instruction: an ONNX file goes where the zoo looks for the
    model; a weights file (torchvision, stream) keeps its own name where the zoo looks for it and
    is exported on first use (renamed to .onnx it would be loaded as a model and fail); a Hugging
    Face repository is several files, all named, in one folder."""
    url = e.get("url")
    fmt = e.get("format", "onnx")
    head = f"network {key} is not in the local cache and could not be downloaded ({reason}). On a machine " \
           "with internet access, "
    if fmt == "xclip":
        hub, hf = e["hub"], os.path.join(folder, "hf")
        return (f"{head}download the Hugging Face repository {hub} into {hf} (huggingface-cli download {hub} "
                f"--local-dir {hf}, or its files {', '.join(HUB_FILES)} from https://huggingface.co/{hub}); it is "
                "exported to ONNX on first use, needs actionnet[export] (set ACTIONNET_HOME to move the cache), "
                "or pass --model FILE.onnx written by actionnet-export xclip, with FILE.text.onnx beside it")
    if fmt in ("torchvision", "stream"):
        what = f"fetch {url} and put it at {_weights_path(e, folder)} under that name; these weights are " \
               "exported to ONNX on first use, which needs actionnet[export]"
    else:
        file = e.get("file") or key
        archive = f"{file.split('/')[0]}.tar.gz" if "/" in file else None
        source = url or (f"{archive} (jetson-inference's tools/download-models.sh)" if archive else None)
        if source is None:
            what = "put the model at "
        elif e.get("archive") and archive:
            what = f"fetch {source}, extract it and put {file} at "
        else:
            what = f"fetch {source} and put the model at "
        places = candidates(key, e, folder)
        what += " or ".join(places)
    return f"{head}{what} (set ACTIONNET_HOME to move the cache), or pass --model FILE --labels FILE"
