"""A model served by a Triton Inference Server, behind the same engine interface.

A served model is addressed as ``grpc://HOST:PORT/NAME`` (the CLI builds it from ``--server``
and ``--model``). Everything the runtime needs to feed it, the ``actionnet.*`` spec, comes from
the server's model-config endpoint (``actionnet-export triton`` puts it in the config's
``parameters``), and its inputs and outputs from the model-metadata endpoint, so the client is
given nothing but the name and cannot drift from what the server runs.

Many clients share one server: each request carries the clips of one call (one window, or every
ready person of a frame), and the server's dynamic batcher merges requests from all streams. A
call larger than the model's ``max_batch_size`` is split.

When the server goes away mid-run (a restart, a crash, the network), a request is retried with
the live sources' backoff (0.25 s doubling to 4 s), the last try at exactly ``reconnect`` seconds
(the CLI's ``--reconnect-timeout``); the call that was waiting then returns as if nothing had
happened, so no classification is lost from the events. Each retry is a connection attempt of its
own: gRPC's reconnect backoff (1 s growing by 1.6x per failure, on a connection gRPC shares between
all channels to one address) would otherwise fail retries at once while the server is already back,
so the engine's channel has a subchannel pool of its own and a short reconnect backoff, and is
opened afresh before each retry. Errors a user can make (no server at the address, no such model,
inputs that do not fit) are one line each.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import MissingLibraryError, ServerError, UsageError
from .base import Engine, TensorInfo

SCHEME = "grpc://"
DEFAULT_PORT = 8001
_TYPES = {"UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64, "BOOL": np.bool_}
# gRPC status codes that mean "not there right now" rather than "this request is wrong"
_TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")
_MAX_DELAY = 4.0


def _channel_args() -> list:
    """tritonclient's own defaults (2 GB messages, its keepalive settings) plus what makes a
    reconnect prompt: a subchannel pool of this channel's own (not the process-wide one, whose
    connection to the address may be deep in backoff from earlier failures) and a reconnect backoff
    of 0.25 s growing to at most 1 s (gRPC's default: 1 s growing to 120 s). Not
    ``grpc.min_reconnect_backoff_ms``: gRPC takes it as the least time a connection attempt is
    given (20 s), which a slow link may need."""
    grpc = _import()
    k = grpc.KeepAliveOptions()
    size = getattr(grpc, "MAX_GRPC_MESSAGE_SIZE", 2 ** 31 - 1)
    return [("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            ("grpc.keepalive_time_ms", k.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", k.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", k.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", k.http2_max_pings_without_data),
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 1000)]


def _import():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise MissingLibraryError("the Triton client is not installed: pip install 'actionnet[triton]'") from None
    return grpcclient


def is_server_url(path) -> bool:
    return isinstance(path, str) and path.lower().startswith(SCHEME)


def model_url(server: str, model: str, reconnect: Optional[float] = None) -> str:
    """``grpc://HOST:PORT/NAME[?reconnect=S]`` from ``--server`` (``grpc://host:port`` or
    ``host:port``) and a model name."""
    address = server_address(server)
    if not model or "/" in model or model.startswith("."):
        raise UsageError(f"--model with --engine triton is a model name on the server, got {model!r}")
    url = f"{SCHEME}{address}/{model}"
    return url if reconnect is None else f"{url}?reconnect={reconnect:g}"


def server_address(server: str) -> str:
    s = server.strip()
    if "://" in s:
        scheme, rest = s.split("://", 1)
        if scheme.lower() != "grpc":
            raise UsageError(f"--server {server}: actionnet talks to Triton over gRPC; give grpc://HOST:PORT "
                             f"(the server's gRPC port, 8001 by default)")
        s = rest
    s = s.rstrip("/")
    if not s or "/" in s:
        raise UsageError(f"--server wants grpc://HOST:PORT, got {server!r}")
    host, _, port = s.rpartition(":") if ":" in s.lstrip("[").split("]")[-1] else (s, "", "")
    if port and not port.isdigit():
        raise UsageError(f"--server {server}: port {port!r} is not a number")
    return f"{host}:{port}" if port else f"{s}:{DEFAULT_PORT}"


def split_url(url: str) -> Tuple[str, str, dict]:
    parts = urlsplit(url)
    model = parts.path.strip("/")
    if parts.scheme.lower() != "grpc" or not parts.netloc or not model or "/" in model:
        raise UsageError(f"a served model is grpc://HOST:PORT/NAME, got {url!r}")
    address = parts.netloc if ":" in parts.netloc else f"{parts.netloc}:{DEFAULT_PORT}"
    return address, model, {k: v[-1] for k, v in parse_qs(parts.query).items()}


def _reason(e) -> str:
    msg = (e.message() if hasattr(e, "message") else str(e)) or str(e)
    return " ".join(str(msg).split())[:300]


def _status(e) -> str:
    s = e.status() if hasattr(e, "status") else None
    return str(s or "").rsplit(".", 1)[-1]


class TritonEngine(Engine):
    name = "triton"

    def __init__(self, url: str, reconnect: Optional[float] = None, timeout: float = 10.0, log=sys.stderr):
        grpc = _import()
        from tritonclient.utils import InferenceServerException

        self._error = InferenceServerException
        self._grpc = grpc
        self.address, self.model, query = split_url(url)
        try:
            self.reconnect = float(query.get("reconnect", 30.0) if reconnect is None else reconnect)
        except ValueError:
            raise UsageError(f"{url}: reconnect={query.get('reconnect')!r} is not a number of seconds") from None
        self.timeout, self.log = timeout, log
        self.client = self._connect()
        try:
            meta, config = self._describe()
        except Exception:
            self.client.close()
            raise
        self.max_batch = int(config.max_batch_size)

        def info(t, batched):
            shape = tuple(("N" if i == 0 and batched else None) if d < 0 else int(d) for i, d in enumerate(t.shape))
            return TensorInfo(t.name, shape, np.dtype(_TYPES.get(t.datatype, np.float32)))

        batched = self.max_batch > 0
        inputs = tuple(info(t, batched) for t in meta.inputs)
        outputs = tuple(info(t, batched) for t in meta.outputs)
        metadata = {k: p.string_value for k, p in config.parameters.items()}
        super().__init__(f"{SCHEME}{self.address}/{self.model}", inputs, outputs, metadata)

    def _connect(self):
        return self._grpc.InferenceServerClient(self.address, channel_args=_channel_args())

    def _reconnect(self) -> None:
        """A new channel: the next try connects now, whatever backoff the old one is in."""
        old, self.client = self.client, self._connect()
        try:
            old.close()
        except Exception:
            pass

    def _describe(self):
        """Model metadata and config, or one line saying why not (no server, no model)."""
        c, e_type = self.client, self._error
        try:
            c.is_server_live(client_timeout=self.timeout)
        except e_type as e:
            raise ServerError(f"cannot reach the Triton server at {self.address} ({_reason(e)}); "
                              f"is it running, and is that its gRPC port?") from None
        try:
            ready = c.is_model_ready(self.model, client_timeout=self.timeout)
        except e_type as e:
            raise ServerError(f"Triton server at {self.address}: {_reason(e)}") from None
        if not ready:
            try:
                index = c.get_model_repository_index(client_timeout=self.timeout)
                names = sorted({m.name for m in index.models if getattr(m, "state", "") == "READY"} or
                               {m.name for m in index.models})
            except e_type:
                names = []
            have = f"; its models: {', '.join(names)}" if names else "; it serves no models"
            raise ServerError(f"the Triton server at {self.address} has no ready model {self.model!r}{have}")
        try:
            meta = c.get_model_metadata(self.model, client_timeout=self.timeout)
            config = c.get_model_config(self.model, client_timeout=self.timeout).config
        except e_type as e:
            raise ServerError(f"Triton server at {self.address}, model {self.model!r}: {_reason(e)}") from None
        return meta, config

    # -- inference ------------------------------------------------------------------------
    def _run(self, feeds, outputs):
        first = next(iter(feeds.values()))
        n = first.shape[0] if first.ndim else 1
        if self.max_batch <= 0 or n <= self.max_batch:
            return self._infer(feeds, outputs)
        parts = [self._infer({k: v[i:i + self.max_batch] for k, v in feeds.items()}, outputs)
                 for i in range(0, n, self.max_batch)]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(outputs))]

    def _infer(self, feeds, outputs: Sequence[str]):
        grpc = self._grpc
        inputs = []
        for name, x in feeds.items():
            t = grpc.InferInput(name, list(x.shape), _triton_type(x.dtype))
            t.set_data_from_numpy(np.ascontiguousarray(x))
            inputs.append(t)
        wanted = [grpc.InferRequestedOutput(o) for o in outputs]
        lost_since = deadline = None
        delay = 0.25
        while True:
            try:
                result = self.client.infer(self.model, inputs, outputs=wanted)
            except self._error as e:
                if not self._transient(e):
                    raise ServerError(f"Triton model {self.model!r} at {self.address} refused the request: "
                                      f"{_reason(e)}") from None
                now = time.monotonic()
                if lost_since is None:
                    lost_since, deadline = now, now + self.reconnect
                    if self.reconnect > 0 and self.log is not None:
                        print(f"actionnet: Triton server at {self.address} is gone ({_reason(e)}); "
                              f"retrying (up to {self.reconnect:g} s)", file=self.log)
                if now >= deadline:
                    raise ServerError(f"the Triton server at {self.address} is gone and did not come back within "
                                      f"{self.reconnect:g} s (--reconnect-timeout); last error: {_reason(e)}") from None
                time.sleep(min(delay, deadline - now))  # the last try is made at the deadline
                delay = min(delay * 2, _MAX_DELAY)
                self._reconnect()
                continue
            if lost_since is not None and self.log is not None:
                print(f"actionnet: Triton server at {self.address} is back after "
                      f"{time.monotonic() - lost_since:.1f} s", file=self.log)
            return [result.as_numpy(o) for o in outputs]

    @staticmethod
    def _transient(e) -> bool:
        if _status(e) in _TRANSIENT:
            return True
        # a restarted server that is up but has not loaded the model yet
        msg = _reason(e).lower()
        return "unknown model" in msg or "is not ready" in msg or ("not found" in msg and "model" in msg)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def _triton_type(dtype) -> str:
    for k, v in _TYPES.items():
        if np.dtype(v) == dtype:
            return k
    raise UsageError(f"Triton takes no {dtype} tensors")


def apply_server_args(args) -> None:
    """CLI hook: with ``--engine triton`` (or ``--server``), ``--model`` and ``--detector`` are
    names on the server; they become ``grpc://`` model addresses that carry
    ``--reconnect-timeout``, and everything downstream opens them like files."""
    server = getattr(args, "server", None)
    if args.engine != "triton" and not server:
        return
    if args.engine not in ("triton", "auto"):
        raise UsageError(f"--server serves models to --engine triton, not --engine {args.engine}")
    args.engine = "triton"
    if not args.model:
        raise UsageError("--engine triton needs --model NAME (the model's name in the server's repository)")
    reconnect = getattr(args, "reconnect_timeout", None)
    if not is_server_url(args.model):
        if not server:
            raise UsageError("--engine triton needs --server grpc://HOST:PORT")
        args.model = model_url(server, args.model, reconnect)
    if getattr(args, "detector", None) and not is_server_url(args.detector):
        if not server:
            raise UsageError("--engine triton needs --server grpc://HOST:PORT")
        args.detector = model_url(server, args.detector, reconnect)
