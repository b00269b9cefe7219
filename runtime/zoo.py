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
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Optional

from .errors import ZooError


def cache_dir() -> str:
    """``$ACTIONNET_HOME``, default ``~/.cache/actionnet``: the zoo's files and every engine cache."""
    return os.environ.get("ACTIONNET_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "actionnet")


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
    if fmt == "onnx":
        model = os.path.join(folder, e["file"])
    elif fmt in ("torchvision", "stream"):
        model = os.path.join(folder, f"{key}.onnx")
    else:
        raise ZooError(f"network {key}: unknown format {fmt!r} in the manifest")
    if not os.path.isfile(model):
        if not download:
            raise ZooError(_offline_message(key, e, folder, model, "downloads disabled"))
        payload = fetch(key, e, folder, log)
        if fmt == "torchvision":
            _export_torchvision(key, e, payload, model, log)
        elif fmt == "stream":
            _export_stream(key, e, payload, model, log)
        if not os.path.isfile(model):
            raise ZooError(f"network {key}: the download did not contain {e.get('file')}")
    spec = dict(e.get("spec", {}))
    for k in ("mean", "std", "resize_size"):
        if k in spec:
            spec[k] = tuple(spec[k])
    return ZooEntry(key, model, labels_file(e), e.get("input_blob"), e.get("output_blob"), spec)


def fetch(key: str, e: dict, folder: str, log) -> str:
    """Download ``e['url']`` into ``folder`` (extracting archives); returns the payload path."""
    url = e.get("url")
    if not url:
        raise ZooError(_offline_message(key, e, folder, None, "the manifest has no download address for it"))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=folder)
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
            raise ZooError(_offline_message(key, e, folder, None, str(reason))) from None
        digest = h.hexdigest()
        want = e.get("sha256")
        prefix = e.get("sha256_prefix")
        if want and digest != want.lower():
            raise ZooError(f"network {key}: checksum mismatch for {url}: sha256 {digest}, expected {want}; "
                           "the file was discarded")
        if prefix and not digest.startswith(prefix.lower()):
            raise ZooError(f"network {key}: checksum mismatch for {url}: sha256 {digest} does not start with "
                           f"{prefix}; the file was discarded")
        if not want and not prefix:
            print(f"actionnet: {key}: no checksum is published for this file; sha256 of the download: {digest}",
                  file=log)
        archive = e.get("archive")
        if archive:
            _extract(tmp, archive, folder, key)
            return folder
        dest = os.path.join(folder, os.path.basename(url.split("?")[0]))
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def _offline_message(key: str, e: dict, folder: str, model: Optional[str], reason: str) -> str:
    what = e.get("file") or os.path.basename(e.get("url") or key)
    where = e.get("url") or f"{os.path.dirname(what) or what}.tar.gz (jetson-inference's download-models tool)"
    return (f"network {key} is not in the local cache and could not be downloaded ({reason}). "
            f"Fetch {where} on a machine with internet access and put {what} "
            f"{'(extracted) ' if e.get('archive') else ''}under {folder} (set ACTIONNET_HOME to move the cache), "
            f"or pass --model FILE --labels FILE")
