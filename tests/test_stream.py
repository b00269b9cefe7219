"""Streaming models: the state contract, MoViNet Stream and TSM online exports with stepped
parity, the runtime's state sets (per stream, per person, reset, pool), OpenVINO and the zoo."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from actionnet.errors import ModelError
from actionnet.spec import ModelSpec, StateSpec
from conftest import run_cli
from test_tensorrt import trt  # noqa: F401 (the fake TensorRT of each version, a fixture)

torch = pytest.importorskip("torch")

SIZE = 64  # small inputs keep the exports and steps fast; the graphs are the full-size ones'


def randomise(model, seed=0, size=SIZE):
    """Random weights that make every path count: ReZero alphas off zero (a new MoViNet has
    alpha = 0, its blocks would add nothing), BatchNorm statistics measured on random clips so
    that activations keep their scale through the depth instead of saturating to a constant."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.3, 0.8, generator=g)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # a plain average over the calibration batches
        model.train()
        model(torch.randn(1, 3, 3, size, size, generator=g))
    return model.eval()


def weights_file(path, arch, classes, seed=0, calibrate=True):
    from actionnet.export.stream import build

    torch.manual_seed(seed)
    model = build(arch, classes)
    torch.save((randomise(model, seed) if calibrate else model).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The issue's export commands, run for real on random weights: MoViNet-A0 and TSM online."""
    root = tmp_path_factory.mktemp("stream")
    out = {}
    for arch, classes in (("movinet-a0", 600), ("tsm-mobilenetv2", 400)):
        w = weights_file(root / f"{arch}.pth", arch, classes)
        onnx_path = root / f"{arch}.onnx"
        r = run_cli("stream", "--arch", arch, "--weights", w, "--output", onnx_path, "--size", SIZE,
                    module="actionnet.export.cli")
        assert r.returncode == 0, r.stderr
        assert "one at a time" in r.stderr and "-> OK" in r.stderr
        out[arch] = onnx_path
    return out


def _clips(n, t, seed=0):
    from actionnet.export.onnx_export import sample_clips
    from actionnet.spec import ModelSpec

    spec = ModelSpec(labels=("a",), clip_length=t, height=SIZE, width=SIZE, input_name="x", output_name="y")
    return sample_clips(spec, n, seed)


# -- the contract ----------------------------------------------------------------------------

def test_state_contract_round_trips_through_the_metadata():
    from actionnet.streaming import encode_values, initial_state

    start = np.arange(6, dtype=np.float32).reshape(2, 3)
    states = (StateSpec("s0", "s0_out", (4, 2, 9)), StateSpec("s1", "s1_out", (2, 3), init="values",
                                                                values=encode_values(start)))
    spec = ModelSpec(labels=("a", "b"), clip_length=1, height=8, width=8, input_name="frames", output_name="logits",
                     layout="raw_nthwc", skip_frames=3, states=states)
    back = ModelSpec.from_metadata(spec.to_metadata())
    assert back == spec and back.streaming and back.skip_frames == 3
    assert np.array_equal(initial_state(back.states[1]), start)
    assert not initial_state(back.states[0]).any() and initial_state(back.states[0]).shape == (4, 2, 9)


@pytest.mark.parametrize("kw,match", [
    (dict(init="ones"), "init"), (dict(dtype="float64"), "dtype"), (dict(shape=(0, 3)), "shape"),
    (dict(init="values"), "carries none"),
])
def test_bad_state_specs_are_refused(kw, match):
    base = dict(name="s", output="s_out", shape=(2, 3))
    base.update(kw)
    with pytest.raises(ModelError, match=match):
        StateSpec(**base)


def test_state_names_may_not_clash_with_the_frame_input():
    with pytest.raises(ModelError, match="unique"):
        ModelSpec(labels=("a",), clip_length=1, height=8, width=8, input_name="frames", output_name="logits",
                  states=(StateSpec("frames", "x", (1,)),))


# -- the models in PyTorch -------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["movinet-a0", "movinet-a1", "movinet-a2", "tsm-mobilenetv2"])
def test_stepping_equals_the_causal_clip_in_pytorch(arch):
    from actionnet.export.stream import build

    torch.manual_seed(1)
    size = 48 if arch in ("movinet-a1", "movinet-a2") else SIZE  # deeper: keep them quick
    model = randomise(build(arch, 7), size=size).eval()
    x = torch.randn(2, 4, 3, size, size)
    with torch.no_grad():
        clip, _ = model(x)
        states, steps = (), []
        for t in range(x.shape[1]):
            out, states = model(x[:, t:t + 1], *states)
            steps.append(out)
    stepped = torch.cat(steps, 1)
    assert clip.shape == (2, 4, 7)
    assert torch.allclose(stepped, clip, atol=1e-4 * float(clip.abs().max()) + 1e-6)  # float32 sums in another order
    # the past matters: the last frame alone gives other logits than the last frame of the clip
    with torch.no_grad():
        alone = model(x[:, -1:])[0][:, 0]
    assert (alone - clip[:, -1]).abs().max() > 1e-3 * float(clip.abs().max())


def test_movinet_keys_are_the_pytorch_ports():
    from actionnet.export.movinet import MoViNetStream

    keys = set(MoViNetStream("movinet-a0").state_dict())
    for k in ("conv1.conv_1.conv2d.weight", "blocks.b0_l0.res.1.conv_1.norm.running_var",
              "blocks.b1_l0.deep.conv_2.conv2d.weight", "blocks.b1_l1.se.fc1.conv_1.conv2d.bias",
              "blocks.b4_l3.alpha", "conv7.conv_1.norm.weight", "classifier.0.conv_1.conv2d.weight",
              "classifier.3.conv_1.conv2d.bias"):
        assert k in keys, k
    assert MoViNetStream("movinet-a0").state_dict()["blocks.b1_l0.deep.conv_2.conv2d.weight"].shape == (80, 1, 3, 1)


def test_tsm_reads_a_tsm_checkpoint_layout(tmp_path):
    """TSM's training checkpoints: ``module.base_model.`` prefixes and a ``new_fc`` head."""
    from actionnet.export.tsm import TSMMobileNetV2, remap_state_dict

    m = TSMMobileNetV2(5)
    theirs = {("module.base_model." + k).replace("base_model.classifier.1.", "new_fc."): v
              for k, v in m.state_dict().items()}
    assert set(remap_state_dict(theirs, m)) == set(m.state_dict())


# -- the exported files -----------------------------------------------------------------------

def test_exported_files_carry_the_state_contract(exported):
    from actionnet.engines.onnxmeta import read_metadata

    for arch, path in exported.items():
        spec = ModelSpec.from_metadata(read_metadata(str(path)))
        assert spec.streaming and spec.clip_length == 1 and spec.arch == arch
        assert spec.height == SIZE and spec.layout == "raw_nthwc"
        assert all(st.init == "zeros" and st.dtype == "float32" for st in spec.states)
    a0 = ModelSpec.from_metadata(read_metadata(str(exported["movinet-a0"])))
    assert a0.skip_frames == 5 and a0.sample_fps == 5.0 and a0.num_classes == 600
    tsm = ModelSpec.from_metadata(read_metadata(str(exported["tsm-mobilenetv2"])))
    assert tsm.skip_frames == 0 and len(tsm.states) == 10  # one shift buffer per residual block


def _classifier(path, engine="onnxruntime"):
    from actionnet.model import load_action_model
    from actionnet.streaming import StreamingClassifier

    eng, spec = load_action_model(str(path), engine=engine, log=None)
    return StreamingClassifier(eng, spec, max_batch=4)


def _step_alone(sc, clip):
    st = sc.new_state()
    return np.stack([sc.step(np.ascontiguousarray(clip[t:t + 1][None]), [st])[0] for t in range(len(clip))])


@pytest.mark.parametrize("arch", ["movinet-a0", "tsm-mobilenetv2"])
def test_two_streams_stepped_interleaved_equal_each_alone(exported, arch):
    sc = _classifier(exported[arch])
    a, b = _clips(2, 5, seed=3)
    alone_a, alone_b = _step_alone(sc, a), _step_alone(sc, b)
    sa, sb = sc.new_state(), sc.new_state()
    got_a, got_b, got_batch = [], [], []
    sc1, sc2 = sc.new_state(), sc.new_state()
    for t in range(5):
        got_a.append(sc.step(np.ascontiguousarray(a[t:t + 1][None]), [sa])[0])
        got_b.append(sc.step(np.ascontiguousarray(b[t:t + 1][None]), [sb])[0])
        got_batch.append(sc.step(np.ascontiguousarray(np.stack([b[t:t + 1], a[t:t + 1]])), [sc2, sc1]))
    tol = 1e-4 * np.abs(alone_a).max() + 1e-6
    np.testing.assert_allclose(np.stack(got_a), alone_a, atol=tol)
    np.testing.assert_allclose(np.stack(got_b), alone_b, atol=tol)
    batch = np.stack(got_batch)
    np.testing.assert_allclose(batch[:, 0], alone_b, atol=tol)
    np.testing.assert_allclose(batch[:, 1], alone_a, atol=tol)
    assert np.abs(alone_a - alone_b).max() > 10 * tol  # different clips, different logits
    # a reset state set starts over exactly like a new one
    sa.reset()
    np.testing.assert_allclose(sc.step(np.ascontiguousarray(a[:1][None]), [sa])[0], alone_a[0], atol=tol)


def test_openvino_steps_the_states_like_onnx_runtime(exported):
    pytest.importorskip("openvino")
    clip = _clips(1, 4, seed=5)[0]
    ort = _step_alone(_classifier(exported["movinet-a0"]), clip)
    ov = _step_alone(_classifier(exported["movinet-a0"], "openvino"), clip)
    np.testing.assert_allclose(ov, ort, atol=1e-3 * np.abs(ort).max() + 1e-5)


def test_weights_that_do_not_fit_are_one_line_errors(tmp_path):
    w = weights_file(tmp_path / "a1.pth", "movinet-a1", 600, calibrate=False)
    r = run_cli("stream", "--arch", "movinet-a0", "--weights", w, "--output", tmp_path / "x.onnx",
                module="actionnet.export.cli")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "does not fit movinet-a0" in r.stderr and not (tmp_path / "x.onnx").exists()


# -- the runtime ------------------------------------------------------------------------------

def test_whole_frame_mode_labels_every_stored_frame(exported, tmp_path):
    from actionnet.export.synthetic import write_video

    frames = [f[..., ::-1].copy() for f in _clips(1, 12, seed=7)[0]]
    video = tmp_path / "v.mp4"
    write_video(str(video), frames)
    for skip, want in ((None, 2), (0, 12), (2, 4)):  # None: the stride in the model (5): frames 0 and 6
        ev = tmp_path / f"ev{skip}.jsonl"
        args = ["--model", exported["movinet-a0"], "--threshold=0", "--events", ev, "--headless", "--no-progress",
                "--engine", "onnxruntime", video, tmp_path / "out.mp4"]
        if skip is not None:
            args[0:0] = ["--skip-frames", skip]
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        rows = [e for e in map(json.loads, open(ev)) if e.get("event") == "classification"]
        assert len(rows) == want, (skip, rows)
        assert rows[0]["frame"] == 0 and rows[0]["label"] is not None


def test_normalisation_flags_are_refused_because_the_graph_normalises(exported, tmp_path):
    """A streaming export takes raw uint8 frames and scales and normalises them inside its graph,
    where the host cannot reach: --mean, --std and --value-scale used to be taken and silently
    ignored (the same scores with and without them). Now they are refused in one line, whole-frame
    and per person; the model's own values change nothing and are accepted."""
    import actionnet
    from actionnet.engines.onnxmeta import read_metadata
    from actionnet.errors import UsageError
    from actionnet.export.synthetic import write_video
    from actionnet.persons import PersonActionNet
    from detector_fakes import square_detector

    model = exported["movinet-a0"]
    video = tmp_path / "v.mp4"
    write_video(str(video), [f[..., ::-1].copy() for f in _clips(1, 3, seed=7)[0]])
    for flag in ("--mean=0.5,0.5,0.5", "--std=2,2,2", "--value-scale=1"):
        out = tmp_path / "out.mp4"
        r = run_cli("--model", model, "--skip-frames=0", "--headless", "--no-progress", "--engine", "onnxruntime",
                    flag, video, out)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith(f"actionnet: error: {flag.split('=')[0]}: {model} normalises inside its graph")
        assert "actionnet-export" in lines[0] and not out.exists()
    with pytest.raises(UsageError, match="--value-scale: .* normalises inside its graph"):
        PersonActionNet(str(exported["tsm-mobilenetv2"]), str(square_detector(tmp_path / "sq.onnx")),
                        value_scale=1.0, engine="onnxruntime", log=None)
    own = ModelSpec.from_metadata(read_metadata(str(model)))
    with actionnet.ActionNet(model=str(model), mean=own.mean, std=own.std, value_scale=own.value_scale,
                             engine="onnxruntime", log=None) as net:
        assert net.spec == own


def test_net_reset_starts_the_stream_over(exported):
    import actionnet

    frames = [f[..., ::-1].copy() for f in _clips(1, 6, seed=9)[0]]
    with actionnet.ActionNet(model=str(exported["movinet-a0"]), skip_frames=0, threshold=0.0, engine="onnxruntime",
                             log=None) as net:
        first = [net.update(f).topk for f in frames]
        net.reset()
        again = [net.update(f).topk for f in frames]
        assert net.state.steps == len(frames)
    assert [[i for i, _, _ in k] for k in again] == [[i for i, _, _ in k] for k in first]
    np.testing.assert_allclose([[c for _, _, c in k] for k in again], [[c for _, _, c in k] for k in first], atol=1e-6)
    assert first[-1] != first[0]  # the state moved the scores


def test_per_person_mode_keeps_one_state_per_track(exported, tmp_path):
    from actionnet.persons import PersonActionNet
    from detector_fakes import square_detector
    from persons_video import CONTEXT, squares_frames

    det = square_detector(tmp_path / "sq.onnx")
    movers = [("red", "right", 0.8, 40, 20), ("blue", "left", 0.8, 200, 90)]
    frames, _ = squares_frames(movers, frames=10)
    solo, _ = squares_frames(movers[:1], frames=20)
    runs = {}
    for batch in (1, 8):  # one call per person vs both people in one call
        with PersonActionNet(str(exported["tsm-mobilenetv2"]), str(det), skip_frames=0, context=CONTEXT,
                             threshold=0.0, max_batch=batch, track_timeout=0.1, engine="onnxruntime", log=None) as net:
            events = []
            for i, f in enumerate(frames):
                events += net.update(f, i / 30)
            assert len(net.states) == 2
            sets = {id(st.stream) for st in net.states.values()}
            assert len(sets) == 2 and all(st.stream.steps == 10 for st in net.states.values())
            for i, f in enumerate(solo[10:]):  # the blue square leaves: its state set goes back to the pool
                events += net.update(f, (10 + i) / 30)
            assert len(net.states) == 1 and len(net.stream._pool) == 1 and id(net.stream._pool[0]) in sets
        per_track = defaultdict(list)
        for e in events:
            if e["event"] == "classification":
                per_track[e["track_id"]].append(e["confidence"])
        assert sorted(len(v) for v in per_track.values()) == [10, 20]  # a label per stored frame and person
        runs[batch] = per_track
    for tid in runs[1]:
        np.testing.assert_allclose(runs[8][tid], runs[1][tid], atol=1e-5)


def test_zoo_downloads_and_exports_a_stream_network(tmp_path, monkeypatch):
    import hashlib
    import os

    from actionnet import zoo
    from test_zoo import Server

    (tmp_path / "www").mkdir()
    w = weights_file(tmp_path / "www" / "modelA0_stream_statedict_v3", "movinet-a0", 600)
    digest = hashlib.sha256(w.read_bytes()).hexdigest()
    server = Server(tmp_path / "www")
    try:
        manifest = tmp_path / "zoo.json"
        manifest.write_text(json.dumps({"a0": {"format": "stream", "arch": "movinet-a0", "size": SIZE,
                                               "url": f"{server.url}/modelA0_stream_statedict_v3?raw=true",
                                               "sha256": digest, "labels": "kinetics600.txt"}}))
        monkeypatch.setenv("ACTIONNET_ZOO", str(manifest))
        monkeypatch.setenv("ACTIONNET_HOME", str(tmp_path / "home"))
        e = zoo.resolve("a0")
        assert os.path.isfile(e.model_path) and server.hits == 1
        sc = _classifier(e.model_path)
        assert sc.spec.streaming and sc.spec.num_classes == 600
        assert zoo.resolve("a0").model_path == e.model_path and server.hits == 1  # cached, not fetched again
    finally:
        server.stop()


def test_stream_model_runs_on_tensorrt(exported, trt):  # noqa: F811 (the imported fixture)
    """The state tensors get TensorRT optimisation profiles (batch 1 to max, the rest fixed) and
    go round through the engine's buffers: on the fake of each TensorRT version (8.6, 10.3, 11),
    which executes plans with ONNX Runtime, the streamed scores equal ONNX Runtime's."""
    import actionnet

    frames = [f[..., ::-1].copy() for f in _clips(1, 6, seed=9)[0]]
    scores = {}
    for engine in ("onnxruntime", "tensorrt"):
        with actionnet.ActionNet(model=str(exported["tsm-mobilenetv2"]), skip_frames=0, threshold=0.0,
                                 engine=engine, log=None) as net:
            assert net.engine.name == engine and len(net.engine.inputs) > 1
            scores[engine] = [[c for _, _, c in net.update(f).topk] for f in frames]
    np.testing.assert_allclose(scores["tensorrt"], scores["onnxruntime"], atol=1e-5)
