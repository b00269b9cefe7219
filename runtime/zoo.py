"""``--network`` names: manifest -> local cache -> download (sha256-checked) -> clear offline error.

The manifest is ``models/zoo.json`` (``ACTIONNET_ZOO`` points elsewhere, e.g. a private mirror).
Files live under ``$ACTIONNET_HOME`` (default ``~/.cache/actionnet``), one folder per network.
Downloads go to a temporary file, are hashed while they stream, and are moved into place only
when the checksum holds, so an interrupted or tampered download never poses as a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import files
from .errors import ZooError
from .home import cache_dir


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


@dataclass
class ZooEntry:
    name: str
    model_path: str
    labels_path: Optional[str]
    input_blob: Optional[str] = None
    output_blob: Optional[str] = None
    spec_overrides: Dict = field(default_factory=dict)


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
    if model is None and fmt == "torchvision":
        model = candidates(key, e, folder)[0]
        weights = _weights_path(e, folder)
        if weights and os.path.isfile(weights):  # put there by hand (offline), or an export cut short
            _check_sha256(key, e, _sha256_file(weights), weights, "replace it with the published file")
            _export_torchvision(key, e, weights, model, log)
        else:
            if not download:
                raise ZooError(_offline_message(key, e, folder, "downloads disabled"))
            _export_torchvision(key, e, fetch(key, e, folder, log), model, log)
    elif model is None:
        if not download:
            raise ZooError(_offline_message(key, e, folder, "downloads disabled"))
        if fmt == "xclip":  # a Hub repository, exported once (zero-shot, labels at run time)
            _export_xclip(key, e, folder, candidates(key, e, folder)[0], log)
        else:
            payload = fetch(key, e, folder, log)
            if fmt == "stream":
                _export_stream(key, e, payload, candidates(key, e, folder)[0], log)
        model = next((p for p in candidates(key, e, folder) if os.path.isfile(p)), None)
        if model is None:
            raise ZooError(f"network {key}: the download did not contain {e.get('file')}")
    spec = dict(e.get("spec", {}))
    for k in ("mean", "std", "resize_size"):
        if k in spec:
            spec[k] = tuple(spec[k])
    return ZooEntry(key, model, labels_file(e), e.get("input_blob"), e.get("output_blob"), spec)


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
            reason = getattr(err, "reason", None) or err
            raise ZooError(_offline_message(key, e, folder, str(reason))) from None
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
    hf = hub_download(e["hub"], os.path.join(folder, "hf"), log)
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
    """What to fetch, and the exact path(s) to put it at, for a machine without internet access."""
    url = e.get("url")
    if e.get("format", "onnx") == "torchvision":
        what = f"fetch {url} and put it at {_weights_path(e, folder)} (exported to ONNX on first use, needs " \
               "actionnet[export])"
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
    return (f"network {key} is not in the local cache and could not be downloaded ({reason}). "
            f"On a machine with internet access, {what} (set ACTIONNET_HOME to move the cache), "
            f"or pass --model FILE --labels FILE")
