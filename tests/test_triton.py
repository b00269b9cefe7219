"""Triton: repository export, and the Triton engine against a real server on loopback.

The server is the Triton build the ``nvidia-pytriton`` wheel bundles (Python backend only; see
tests/triton_server.py), started and stopped here on 127.0.0.1; the exported ONNX runs through
ONNX Runtime inside a Python-backend model. Labels are compared with the local engine's on the
trained synthetic model; the server's own statistics show requests of several clients batched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

pytest.importorskip("tritonclient.grpc")
from google.protobuf import text_format  # noqa: E402  (tritonclient brings protobuf)
from tritonclient.grpc import model_config_pb2  # noqa: E402

from detector_fakes import square_detector  # noqa: E402
from persons_video import CONTEXT, squares_frames  # noqa: E402
from triton_server import Relay, TritonServer, server_env  # noqa: E402

MOVERS = [("red", "right", 0.8, 40, 20), ("blue", "left", 0.8, 200, 90)]  # as in test_persons
LABELS = ("red left slow", "blue right fast", "red right fast", "blue left slow")


def parse_config(folder) -> model_config_pb2.ModelConfig:
    return text_format.Parse((Path(folder) / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def export(*args):
    r = run_cli("triton", *args, module="actionnet.export.cli", timeout=120)
    assert r.returncode == 0, r.stderr
    return r


# ------------------------------------------------------------------------------------------
# Repository export (no server)


def test_repository_configs_parse_and_carry_the_spec(tmp_path, synthetic_model):
    from actionnet.engines.onnxmeta import read_metadata

    repo = tmp_path / "models"
    det = square_detector(tmp_path / "sq.onnx")
    export(synthetic_model, "--repo", repo, "--name", "r3d", "--max-batch", "8", "--preferred-batch", "2,4,8,32",
           "--queue-delay-us", "3000", "--instances", "2")
    export(det, "--repo", repo, "--name", "people", "--backend", "python")
    meta = read_metadata(str(synthetic_model))

    c = parse_config(repo / "r3d")
    assert c.name == "r3d" and c.platform == "onnxruntime_onnx" and c.max_batch_size == 8
    t, h, w = (int(meta[f"actionnet.{k}"]) for k in ("clip_length", "height", "width"))
    (inp,) = c.input
    assert inp.name == meta["actionnet.input_name"] and list(inp.dims) == [t, h, w, 3]
    assert model_config_pb2.DataType.Name(inp.data_type) == "TYPE_UINT8"
    (out,) = c.output
    assert out.name == meta["actionnet.output_name"] and out.label_filename == "labels.txt"
    labels = json.loads(meta["actionnet.labels"])
    assert list(out.dims) == [len(labels)]
    assert (repo / "r3d" / "labels.txt").read_text().splitlines() == labels
    assert list(c.dynamic_batching.preferred_batch_size) == [2, 4, 8]  # none above max_batch_size
    assert c.dynamic_batching.max_queue_delay_microseconds == 3000
    assert c.instance_group[0].count == 2 and model_config_pb2.ModelInstanceGroup.Kind.Name(
        c.instance_group[0].kind) == "KIND_GPU"
    # the whole spec, key for key: what a client reads back from the server
    assert {k: p.string_value for k, p in c.parameters.items()} == {k: v for k, v in meta.items()
                                                                      if k.startswith("actionnet.")}
    assert (repo / "r3d" / "1" / "model.onnx").read_bytes() == Path(synthetic_model).read_bytes()

    d = parse_config(repo / "people")
    assert d.backend == "python" and not d.platform
    assert d.parameters["actionnet.task"].string_value == "detector"
    assert (repo / "people" / "1" / "model.py").exists() and (repo / "people" / "1" / "model.onnx").exists()
    # the square detector's batch axis is fixed at 1: no batching, full dims
    assert d.max_batch_size == 0 and list(d.input[0].dims)[0] == 1 and not d.HasField("dynamic_batching")

    r = run_cli("triton", synthetic_model, "--repo", repo, "--name", "r3d", module="actionnet.export.cli")
    assert r.returncode != 0 and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_tensorrt_engine_and_streaming_configs(tmp_path):
    """A TensorRT engine becomes model.plan (actionnet header stripped) on tensorrt_plan; a
    streaming model's state tensors become sequence batching with implicit state."""
    import base64
    import hashlib

    from actionnet.engines.header import EngineHeader, write_engine
    from actionnet.export.triton import Tensor, config_pbtxt
    from actionnet.spec import ModelSpec

    spec = ModelSpec(labels=("a", "b", "c"), clip_length=4, height=16, width=16, input_name="clip",
                     output_name="scores", layout="raw_nthwc")
    plan = os.urandom(256)
    hdr = EngineHeader(metadata=spec.to_metadata(), trt_version="10.9", gpu_name="Orin", compute_capability="8.7",
                       precision="fp16", max_batch=4, plan_size=len(plan),
                       plan_sha256=hashlib.sha256(plan).hexdigest())
    engine = tmp_path / "m.engine"
    write_engine(str(engine), hdr, plan)
    r = export(engine, "--repo", tmp_path / "repo", "--max-batch", "16")
    assert "TensorRT 10.9" in r.stderr
    c = parse_config(tmp_path / "repo" / "m")
    assert c.platform == "tensorrt_plan" and c.max_batch_size == 4  # the plan's profile ends there
    assert list(c.input[0].dims) == [4, 16, 16, 3] and list(c.output[0].dims) == [3]
    assert (tmp_path / "repo" / "m" / "1" / "model.plan").read_bytes() == plan

    init = np.arange(6, dtype=np.float32)
    meta = dict(spec.to_metadata())
    meta["actionnet.states"] = json.dumps([
        {"name": "h_in", "output": "h_out", "shape": [2, 8], "dtype": "float32", "init": "zeros"},
        {"name": "c_in", "output": "c_out", "shape": [6], "dtype": "float32", "init": "values",
         "values": base64.b64encode(init.tobytes()).decode()}])
    text = config_pbtxt("stream", [Tensor("clip", "uint8", [-1, 1, 16, 16, 3]), Tensor("h_in", "float32", [-1, 2, 8]),
                                   Tensor("c_in", "float32", [-1, 6])],
                        [Tensor("scores", "float32", [-1, 3]), Tensor("h_out", "float32", [-1, 2, 8]),
                         Tensor("c_out", "float32", [-1, 6])], meta, platform="onnxruntime_onnx", max_batch=8)
    s = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert [i.name for i in s.input] == ["clip"] and [o.name for o in s.output] == ["scores"]  # state is implicit
    assert not s.HasField("dynamic_batching")
    st = {x.input_name: x for x in s.sequence_batching.state}
    assert st["h_in"].output_name == "h_out" and list(st["h_in"].dims) == [2, 8]
    assert st["h_in"].initial_state[0].zero_data and st["c_in"].initial_state[0].data_file == "c_in.bin"


# ------------------------------------------------------------------------------------------
# The server's environment, built by the tests


def test_the_server_environment_is_built_once_by_one_of_two_processes_at_once(tmp_path):
    """Two pytest processes wanting the server's environment at the same moment: one builds it
    while the other waits on the lock and then reuses it; a venv whose build died half-way (no
    stamp) is built again. The builder .venv-triton goes through (tests/envs.py's build_venv, from
    the system python3), on a venv with nothing to install: the same path without the downloads."""
    import fcntl
    import stat

    from triton_server import SYSTEM_PYTHON

    if not os.path.exists(SYSTEM_PYTHON):
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no {SYSTEM_PYTHON}")
    builds = tmp_path / "builds"
    python = tmp_path / "python3"  # the system python3, counting the venvs it creates
    python.write_text(f'#!/bin/sh\n[ "$1 $2" = "-m venv" ] && echo venv >> {builds}\nexec {SYSTEM_PYTHON} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    venv = tmp_path / "venv"  # an absolute name: envs.build_venv puts it, and its lock, here
    code = ("import sys; sys.path.insert(0, sys.argv[2]); import envs; "
            "print(envs.build_venv(sys.argv[1], [], python=sys.argv[3]))")

    def builder():
        return subprocess.Popen([sys.executable, "-c", code, str(venv), str(ROOT / "tests"), str(python)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    with open(f"{venv}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a third run busy building it
        procs = [builder(), builder()]
        time.sleep(1.5)
        assert all(p.poll() is None for p in procs) and not venv.exists()  # both wait on the lock
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [out.strip() for out, _ in outs] == [str(venv / "bin" / "python")] * 2
    assert builds.read_text().split() == ["venv"]  # one built it, the other reused it
    prefix = subprocess.run([venv / "bin" / "python", "-c", "import sys; print(sys.prefix)"], capture_output=True,
                            text=True)
    assert prefix.stdout.strip() == str(venv)

    (stamp,) = venv.glob(".actionnet-*")  # written last: without it the build did not finish
    stamp.unlink()
    p = builder()
    assert p.communicate(timeout=120)[0].strip() == str(venv / "bin" / "python")
    assert builds.read_text().split() == ["venv", "venv"] and stamp.exists()


# ------------------------------------------------------------------------------------------
# A real server on loopback


@pytest.fixture(scope="session")
def triton_env():
    """The server and its models' Python: built into .venv-triton on first use (once per checkout,
    reused after; see tests/triton_server.py). On CI a failure to build fails; elsewhere it skips."""
    import envs

    return envs.require(server_env, "the Triton test server's environment cannot be built")


@pytest.fixture(scope="module")
def server(tmp_path_factory, synthetic_model, triton_env):
    folder = tmp_path_factory.mktemp("triton")
    repo = folder / "models"
    det = square_detector(folder / "squares.onnx")
    from actionnet.export.triton import export_model

    # a long queue delay, so that on 2 shared cores requests of concurrent clients meet
    export_model(str(synthetic_model), str(repo), name="syn", backend="python", max_batch=8, preferred=(4, 8),
                 queue_delay_us=20000, threads=1)
    export_model(str(det), str(repo), name="squares", backend="python", threads=1)
    srv = TritonServer(repo, env=triton_env)
    srv.start(timeout=60)
    try:
        yield srv
    finally:
        srv.close()


def _events(path):
    """The classification lines (segment, summary and reconnect lines are not model calls)."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [e for e in lines if e.get("event") == "classification"]


def _same_classifications(served, local):
    assert len(served) == len(local) > 0
    for a, b in zip(served, local):
        assert (a["frame"], a["label"], a.get("track_id")) == (b["frame"], b["label"], b.get("track_id"))
        assert abs(a["confidence"] - b["confidence"]) < 1e-4


def _batch_counts(url, model):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url[len("grpc://"):])
    try:
        stats = c.get_inference_statistics(model).model_stats[0]
        return {int(b.batch_size): int(b.compute_infer.count) for b in stats.batch_stats}
    finally:
        c.close()


def _concurrently(arg_lists, timeout=120):
    """``actionnet`` processes started together; [(process, stderr)]."""
    cmd = [sys.executable, "-m", "actionnet.cli", "--headless", "--no-progress", "--threshold", "0"]
    procs = [subprocess.Popen([*cmd, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for args in arg_lists]
    try:
        return [(p, p.communicate(timeout=timeout)[1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _requests_and_clips(url, model):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url[len("grpc://"):])
    try:
        s = c.get_inference_statistics(model).model_stats[0]
        return int(s.inference_stats.success.count), int(s.inference_count)
    finally:
        c.close()


def test_four_clients_get_the_local_labels_and_are_batched(tmp_path, server, synthetic_model, synthetic_video):
    videos = [synthetic_video(label) for label in LABELS]
    before = _batch_counts(server.url, "syn")
    served_runs = _concurrently([["--engine=triton", f"--server={server.url}", "--model=syn",
                                  f"--events={tmp_path / f'served{i}.jsonl'}", str(v)] for i, v in enumerate(videos)])
    for p, err in served_runs:
        assert p.returncode == 0, err
        assert "triton" in err and server.url in err
    after = _batch_counts(server.url, "syn")
    local_runs = _concurrently([["--engine=onnxruntime", f"--model={synthetic_model}",
                                 f"--events={tmp_path / f'local{i}.jsonl'}", str(v)] for i, v in enumerate(videos)])
    for p, err in local_runs:
        assert p.returncode == 0, err
    for i in range(len(videos)):
        served, local = _events(tmp_path / f"served{i}.jsonl"), _events(tmp_path / f"local{i}.jsonl")
        _same_classifications(served, local)
    grown = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    requests = sum(len(_events(tmp_path / f"served{i}.jsonl")) for i in range(len(videos)))
    assert sum(b * n for b, n in grown.items()) == requests  # every window ran on the server, once
    assert sum(n for b, n in grown.items() if b > 1) > 0, f"no batch of more than one request: {grown}"


def test_per_person_mode_through_the_server(tmp_path, server, synthetic_model):
    """Detector and action model both served; all ready tracks of a frame in one request."""
    from actionnet.export.synthetic import write_video

    frames, _ = squares_frames(MOVERS, frames=24)
    video = write_video(str(tmp_path / "two.mp4"), frames)
    det = tmp_path / "sq.onnx"
    square_detector(det)
    requests0, clips0 = _requests_and_clips(server.url, "syn")
    common = ["--persons", "--skip-frames", "0", "--crop-context", CONTEXT, "--threshold", "0", "--headless",
              "--no-progress"]
    r = run_cli(*common, "--engine=triton", f"--server={server.url}", "--detector=squares", "--model=syn",
                "--events", tmp_path / "served.jsonl", video, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 tracks" in r.stderr
    requests1, clips1 = _requests_and_clips(server.url, "syn")
    local = run_cli(*common, "--engine=onnxruntime", "--detector", det, "--model", synthetic_model,
                    "--events", tmp_path / "local.jsonl", video, timeout=120)
    assert local.returncode == 0, local.stderr
    served = [e for e in _events(tmp_path / "served.jsonl") if e["event"] == "classification"]
    _same_classifications(served, [e for e in _events(tmp_path / "local.jsonl") if e["event"] == "classification"])
    both = {}
    for e in served:
        both.setdefault(e["frame"], set()).add(e["track_id"])
    assert any(len(ids) == 2 for ids in both.values())  # frames where both people were classified
    # one request per frame carries every ready person's clip
    assert clips1 - clips0 == len(served)
    assert requests1 - requests0 == len(both) < len(served)


def test_client_survives_a_server_restart(tmp_path, server, synthetic_model, synthetic_video, capsys):
    """The server is killed (SIGKILL, as a crash) on the 5th request of a run and comes back a
    second later on the same port: the run finishes, and its events equal a local run's."""
    from actionnet import cli
    from actionnet.engines.triton import TritonEngine

    video = synthetic_video(LABELS[1])
    calls = {"n": 0}
    restarted = []
    threads = []
    original = TritonEngine._infer

    def crash_on_fifth(self, feeds, outputs):
        calls["n"] += 1
        if calls["n"] == 5:
            server.kill()

            def come_back():
                time.sleep(1.0)
                server.start(timeout=60)
                restarted.append(time.monotonic())

            threads.append(threading.Thread(target=come_back, daemon=True))
            threads[-1].start()
        return original(self, feeds, outputs)

    TritonEngine._infer = crash_on_fifth
    try:
        rc = cli.main(["--engine=triton", f"--server={server.url}", "--model=syn", "--reconnect-timeout=60",
                       "--headless", "--no-progress", "--threshold=0", f"--events={tmp_path / 'served.jsonl'}",
                       str(video)])
    finally:
        TritonEngine._infer = original
        for t in threads:  # the client may rejoin before start() has seen the server ready
            t.join(60)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert restarted and calls["n"] > 5
    assert "is gone" in err and "is back after" in err
    r = run_cli("--headless", "--no-progress", "--threshold", "0", "--engine", "onnxruntime", "--model",
                synthetic_model, "--events", tmp_path / "local.jsonl", video, timeout=120)
    assert r.returncode == 0, r.stderr
    _same_classifications(_events(tmp_path / "served.jsonl"), _events(tmp_path / "local.jsonl"))


def test_a_server_back_before_the_reconnect_timeout_is_rejoined(tmp_path, server, synthetic_model, synthetic_video,
                                                                 capsys):
    """The server unreachable for two thirds of --reconnect-timeout (4 s of 6; from the 5th request
    on, its port closed and its connections cut by a relay in front of it): the run rejoins it and
    finishes, and every frame's classification is there, in order, as in a local run. (gRPC's
    reconnect backoff on the channel and a retry loop that stopped one backoff step short of the
    deadline made the client give up although the server was back.)"""
    from actionnet import cli
    from actionnet.engines.triton import TritonEngine

    reconnect, outage = 6.0, 4.0
    video = synthetic_video(LABELS[2])
    relay = Relay(server.grpc_port).up()
    calls = {"n": 0}
    times = {}
    original = TritonEngine._infer

    def outage_on_fifth(self, feeds, outputs):
        calls["n"] += 1
        if calls["n"] == 5:
            relay.down()
            times["down"] = time.monotonic()

            def come_back():
                time.sleep(outage)
                relay.up()
                times["up"] = time.monotonic()

            threading.Thread(target=come_back, daemon=True).start()
        return original(self, feeds, outputs)

    TritonEngine._infer = outage_on_fifth
    try:
        rc = cli.main(["--engine=triton", f"--server={relay.url}", "--model=syn", f"--reconnect-timeout={reconnect:g}",
                       "--headless", "--no-progress", "--threshold=0", f"--events={tmp_path / 'served.jsonl'}",
                       str(video)])
    finally:
        TritonEngine._infer = original
        relay.close()
    err = capsys.readouterr().err
    assert rc == 0, err
    assert calls["n"] > 5 and times["up"] - times["down"] >= outage
    assert "is gone" in err
    back = re.search(r"is back after ([0-9.]+) s", err)
    assert back and outage <= float(back.group(1)) <= reconnect + 0.5, err
    r = run_cli("--headless", "--no-progress", "--threshold", "0", "--engine", "onnxruntime", "--model",
                synthetic_model, "--events", tmp_path / "local.jsonl", video, timeout=120)
    assert r.returncode == 0, r.stderr
    served = _events(tmp_path / "served.jsonl")
    assert [e["frame"] for e in served] == sorted({e["frame"] for e in served})  # in order, none twice
    _same_classifications(served, _events(tmp_path / "local.jsonl"))  # none missing


def test_every_retry_reaches_the_server_the_last_at_the_deadline(server):
    """While the server is away, each retry is a connection attempt of its own (not a failure at
    once because gRPC's channel is still in its reconnect backoff, which grows to minutes), so a
    server that is back is found at the next retry; the last retry is made at --reconnect-timeout,
    not one backoff step (up to 4 s) before it, and the error comes right after."""
    from actionnet.engines.triton import TritonEngine
    from actionnet.errors import ServerError

    relay = Relay(server.grpc_port).up()
    x = np.zeros((1, 8, 32, 32, 3), np.uint8)
    eng = TritonEngine(f"{relay.url}/syn", reconnect=2.5, log=None)
    try:
        assert eng.infer(x).shape == (1, 8)
        relay.down(count=True)  # the port stays open; each connection is reset at once, and counted
        t0 = time.monotonic()
        with pytest.raises(ServerError, match="did not come back within 2.5 s"):
            eng.infer(x)
        took = time.monotonic() - t0
    finally:
        eng.close()
        relay.close()
    assert 2.5 <= took < 3.5, took
    assert relay.resets >= 5, relay.resets  # tries at 0, 0.25, 0.75, 1.75 and 2.5 s


def test_one_line_errors(tmp_path, server, synthetic_video):
    from triton_server import free_port

    video = synthetic_video(LABELS[0], frames=12)
    base = ["--headless", "--no-progress", "--engine=triton", "--events", tmp_path / "e.jsonl"]
    cases = [
        ([f"--server=grpc://127.0.0.1:{free_port()}", "--model=syn"], "cannot reach the Triton server"),
        ([f"--server={server.url}", "--model=nope"], "has no ready model 'nope'; its models: squares, syn"),
        ([f"--server={server.url}", "--model=squares"], "is a detector model, not an action model"),
        ([f"--server={server.url}", "--model=syn", "--labels", ROOT / "tests" / "conftest.py"],
         "label count does not match"),
        ([f"--server={server.url}"], "--engine triton needs --model NAME"),
        (["--server=http://127.0.0.1:8000", "--model=syn"], "over gRPC"),
    ]
    for args, message in cases:
        r = run_cli(*base, *args, video, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, r.stderr)


def test_a_server_that_stays_away_ends_the_run_with_one_line(tmp_path, synthetic_model):
    """No server needed: a gone server surfaces as the engine's ServerError after the reconnect
    window, not as a hang or a traceback."""
    from actionnet.engines.triton import TritonEngine
    from actionnet.errors import ServerError

    eng = TritonEngine.__new__(TritonEngine)
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from triton_server import free_port

    eng._grpc, eng._error = grpcclient, InferenceServerException
    eng.address, eng.model, eng.reconnect, eng.timeout, eng.log = f"127.0.0.1:{free_port()}", "syn", 0.6, 2.0, None
    eng.client = eng._connect()
    t0 = time.monotonic()
    with pytest.raises(ServerError, match="did not come back within 0.6 s"):
        eng._infer({"frames": np.zeros((1, 8, 32, 32, 3), np.uint8)}, ["logits"])
    assert time.monotonic() - t0 < 5
    eng.close()


def test_addresses():
    from actionnet.engines.triton import model_url, split_url
    from actionnet.errors import UsageError

    assert model_url("gpu-box", "r3d18") == "grpc://gpu-box:8001/r3d18"
    assert model_url("grpc://127.0.0.1:9001/", "r3d18", 12.5) == "grpc://127.0.0.1:9001/r3d18?reconnect=12.5"
    assert split_url("grpc://127.0.0.1:9001/r3d18?reconnect=12.5") == ("127.0.0.1:9001", "r3d18", {"reconnect": "12.5"})
    for bad in (("http://gpu-box:8000", "m"), ("gpu-box:80x", "m"), ("gpu-box", "a/b")):
        with pytest.raises(UsageError):
            model_url(*bad)


def test_a_call_larger_than_the_servers_batch_is_split(server, synthetic_model):
    """11 clips to a model served with max_batch_size 8: two requests, the local engine's scores."""
    from actionnet.engines import open_engine

    x = np.random.default_rng(3).integers(0, 256, (11, 8, 32, 32, 3), dtype=np.uint8)
    with open_engine(f"{server.url}/syn", log=None) as served, open_engine(str(synthetic_model), "onnxruntime") as local:
        assert served.name == "triton" and served.max_batch == 8 and served.input.shape == ("N", 8, 32, 32, 3)
        spec = lambda m: {k: v for k, v in m.items() if k.startswith("actionnet.")}  # noqa: E731
        assert spec(served.metadata) == spec(local.metadata) and len(spec(local.metadata)) > 10
        before = _requests_and_clips(server.url, "syn")
        got = served.infer(x)
        after = _requests_and_clips(server.url, "syn")
        np.testing.assert_allclose(got, local.infer(x), atol=1e-4)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 11)
