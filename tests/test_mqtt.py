"""Events over MQTT against a real broker: Mosquitto (Debian's ``mosquitto``), started here on a
free loopback port, killed and restarted under a running ``actionnet``; subscribers are paho
clients in this process.

What "no event lost" rests on, end to end (README, "Events over MQTT"): the sink keeps every event
until the broker acknowledges it (QoS 1) and sends in order; the broker keeps sessions on disk
(``persistence true``, saved every second here); the subscriber has a persistent session (clean
session off, QoS 1), so what arrives while it is reconnecting waits for it; ``(run, seq)`` drops
the duplicates QoS 1 allows.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import run_cli, wait_for

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
MOSQUITTO = shutil.which("mosquitto", path=SBIN)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd", path=SBIN)


def _needs(what: str, ok: bool, install: str):
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing on CI ({install}; the README's Install section lists it)")
        pytest.skip(f"{what} not installed ({install})")


@pytest.fixture(scope="module")
def paho():
    try:
        from paho.mqtt import client
    except ImportError:
        _needs("paho-mqtt", False, "pip install -e '.[dev]'")
    return client


@pytest.fixture
def broker(tmp_path, paho):
    _needs("mosquitto", bool(MOSQUITTO and MOSQUITTO_PASSWD), "apt-get install mosquitto")
    brokers = []

    def make(**kw):
        b = Mosquitto(tmp_path / f"broker{len(brokers)}", **kw)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        b.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One Mosquitto on 127.0.0.1:``port``, its sessions and retained messages saved every second in
    its folder (a restart on the same folder and port brings them back). ``password``: logins
    only, user ``cam``. ``tls``: (certfile, keyfile) for a TLS listener."""

    def __init__(self, folder: Path, password=None, tls=None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None
        conf = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {folder}/",
                "autosave_interval 1", "max_queued_messages 100000", "log_dest stderr", "log_type all"]
        if os.geteuid() == 0:
            conf.append("user root")  # as root mosquitto would switch to a user that cannot write here
        if password:
            pw = folder / "passwords"
            subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(pw), "cam", password], check=True, capture_output=True)
            conf += [f"password_file {pw}", "allow_anonymous false"]
        else:
            conf.append("allow_anonymous true")
        if tls:
            conf += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        (folder / "mosquitto.conf").write_text("\n".join(conf) + "\n")

    def start(self) -> "Mosquitto":
        log = open(self.folder / "mosquitto.log", "a")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")], stdout=log, stderr=log)
        log.close()
        wait_for(self._listening, 20, "mosquitto to listen", log=self.folder / "mosquitto.log")
        return self

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved on the way out."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def saves(self) -> int:
        """How many times the broker has written its sessions to disk (every second here)."""
        return (self.folder / "mosquitto.log").read_text().count("Saving in-memory database")

    def uri(self, topic: str, user: str = "", scheme: str = "mqtt") -> str:
        return f"{scheme}://{user}127.0.0.1:{self.port}/{topic}"


class Subscriber:
    """A paho client that keeps every message it receives on ``topics`` (QoS 1), in order.

    ``client_id`` gives it a persistent session (clean session off): a broker with persistence
    keeps its subscription across a restart and queues what arrives while it reconnects."""

    def __init__(self, paho, port, topics, client_id=None, password=None, tls_ca=None):
        self.messages = []  # (topic, payload, retain)
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=client_id is None)
        if password:
            c.username_pw_set("cam", password)
        if tls_ca:
            c.tls_set(ca_certs=str(tls_ca))
        c.reconnect_delay_set(0.25, 1)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([(t, 1) for t in topics])
        c.on_subscribe = lambda *a: self.subscribed.set()  # on every connection
        c.on_disconnect = lambda *a: self.subscribed.clear()
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()
        wait_for(self.subscribed.is_set, 20, "the subscription")

    def _on_message(self, client, userdata, m):
        with self._lock:
            self.messages.append((m.topic, m.payload, m.retain))

    def on(self, topic):
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def events(self, topic):
        return [json.loads(p) for p, _ in self.on(topic)]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def unique(events):
    """Drop the duplicates QoS 1 allows, keeping the first of each ``(run, seq)``."""
    seen, out = set(), []
    for e in events:
        if (e["run"], e["seq"]) not in seen:
            seen.add((e["run"], e["seq"]))
            out.append(e)
    return out


def as_file_line(e: dict) -> dict:
    """An MQTT event as the events file holds it: without the sink's own fields."""
    return {k: v for k, v in e.items() if k not in ("run", "seq", "mqtt_dropped")}


def file_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def cli(*args):
    return [sys.executable, "-m", "actionnet.cli", *map(str, args)]


# ---------------------------------------------------------------------------------------------
# URIs and options: checked before anything connects or loads


@pytest.mark.parametrize("uri, expected", [
    ("mqtt://broker.local/actionnet/kitchen", (False, "broker.local", 1883, "actionnet/kitchen", None, None)),
    ("mqtts://user:p%40ss@broker:8884/site/door", (True, "broker", 8884, "site/door", "user", "p@ss")),
    ("mqtts://broker/t", (True, "broker", 8883, "t", None, None)),
    ("mqtt://cam@10.0.0.2:1884/a", (False, "10.0.0.2", 1884, "a", "cam", None)),
])
def test_broker_uris(uri, expected):
    from actionnet.mqtt import parse_uri

    b = parse_uri(uri)
    assert (b.tls, b.host, b.port, b.topic, b.user, b.password) == expected
    assert "p@ss" not in b.shown and "p%40ss" not in b.shown


@pytest.mark.parametrize("uri, message", [
    ("mqtt://broker", "no topic"),
    ("mqtt://broker/", "no topic"),
    ("mqtt://broker/a//b", "empty level"),
    ("mqtt:///topic", "no broker host"),
    ("mqtt://broker:99999/t", "port must be a number"),
    ("mqtt://broker:x/t", "port must be a number"),
    ("mqtt://broker/a/+/b", "wildcards"),
    ("mqtt://broker/a/#", "wildcards"),
    ("mqtt://broker/a?qos=2", "no ?options"),
])
def test_bad_broker_uris_are_one_line_before_anything_loads(uri, message):
    from actionnet.cli import build_parser, config_from_args
    from actionnet.errors import UsageError

    with pytest.raises(UsageError, match=message.replace("?", r"\?").replace("+", r"\+")):
        config_from_args(build_parser().parse_args(["--events", uri, "--model", "none.onnx", "in.mp4"]))


def test_bad_uri_and_stray_flags_exit_2_in_one_line(paho, tmp_path):
    for args, message in ((["--events", "mqtt://user:secret@broker"], "no topic"),
                          (["--mqtt-queue", tmp_path / "q"], "--mqtt-queue is for an MQTT events sink"),
                          (["--events", "mqtt://b/t", "--mqtt-ca", tmp_path / "ca.pem"], "--mqtt-ca is for mqtts://"),
                          (["--events", "mqtts://b/t", "--mqtt-ca", tmp_path / "ca.pem"], "no such file"),
                          (["--events", "mqtt://b/t", "--mqtt-queue-size", "0"], "must be >= 1")):
        r = run_cli("--model", tmp_path / "none.onnx", "--headless", *args, tmp_path / "in.mp4")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
        assert "secret" not in r.stderr


def test_without_paho_a_broker_uri_fails_in_one_line_naming_the_extra(tmp_path):
    code = ("import sys; sys.modules['paho'] = None; sys.modules['paho.mqtt'] = None\n"
            "from actionnet.cli import main; sys.exit(main(sys.argv[1:]))")
    video = tmp_path / "in.mp4"
    video.write_bytes(b"\0" * 10)  # never read: the missing extra is found before the source opens
    r = subprocess.run([sys.executable, "-c", code, "--model", tmp_path / "none.onnx", "--headless",
                        "--events", "mqtt://user:secret@127.0.0.1/t", str(video)],
                       capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines[-1] == ("actionnet: error: --events mqtt://user@127.0.0.1:1883/t needs paho-mqtt: "
                         "pip install 'actionnet[mqtt]'"), r.stderr


# ---------------------------------------------------------------------------------------------
# The queue


def test_backlog_keeps_order_spills_to_its_file_drops_the_oldest_and_carries_to_the_next_run(tmp_path):
    from actionnet.mqtt import Backlog

    path = tmp_path / "queue.jsonl"
    q = Backlog(limit=5, path=str(path), memory=2)
    for i in range(7):
        q.push(b'{"n":%d}' % i)
    assert q.dropped == 2 and len(q) == 5
    assert path.read_bytes().count(b"\n") == 5  # beyond the first two, and the drops emptied memory
    assert q.pop() == b'{"n":2}'
    assert q.save(front=[b'{"n":1}']) == 5  # sent, not acknowledged: first in the file
    with open(path, "ab") as f:
        f.write(b'{"n":')  # a line cut by a crash
    again = Backlog(limit=10, path=str(path), memory=2)
    assert again.carried == 5
    assert [again.pop() for _ in range(5)] == [b'{"n":%d}' % i for i in (1, 3, 4, 5, 6)]
    assert again.save() == 0 and not path.exists()  # nothing left: no file beside the run


def test_full_queue_drops_the_oldest_says_how_many_and_close_waits_a_bounded_time(paho):
    from actionnet.mqtt import MqttSink

    log = io.StringIO()
    port = free_port()  # nothing listens: the broker is down
    sink = MqttSink(f"mqtt://127.0.0.1:{port}/q", queue_size=10, drain_timeout=1.0, log=log)
    assert "broker unreachable (connection refused)" in log.getvalue()
    for i in range(25):
        sink.write({"event": "classification", "frame": i, "time": i / 30, "label": "a", "reported_label": "a"})
    t0 = time.monotonic()
    sink.close()
    waited = time.monotonic() - t0
    assert 0.9 <= waited < 5.0, waited
    assert (sink.dropped, sink.undelivered, sink.published) == (15, 10, 0)
    text = log.getvalue()
    assert text.count("queue full (10 events): dropping the oldest") == 1, text
    assert text.strip().splitlines()[-1].endswith("0 events published (run %s); 15 oldest dropped (queue full at 10); "
                                                  "10 not delivered: lost (--mqtt-queue FILE keeps them for the next run)"
                                                  % sink.run_id), text


def test_abandon_drains_ends_a_wait_on_another_thread(paho):
    """Under --config each camera's sink closes on the camera's thread, and a second Ctrl-C
    reaches the main thread only: abandon_drains() ends every sink's wait from there."""
    import threading

    from actionnet.mqtt import MqttSink, abandon_drains

    sink = MqttSink(f"mqtt://127.0.0.1:{free_port()}/q", drain_timeout=30.0, log=io.StringIO())  # broker down
    sink.write({"event": "classification", "frame": 0, "time": 0.0, "label": "a", "reported_label": "a"})
    closing = threading.Thread(target=sink.close)
    t0 = time.monotonic()
    closing.start()
    time.sleep(0.7)  # past the first half second: it says it waits
    abandon_drains()
    closing.join(10.0)
    assert not closing.is_alive() and time.monotonic() - t0 < 8.0
    assert sink.undelivered == 1


def test_a_queue_file_hands_what_a_stopped_run_could_not_send_to_the_next_run(broker, paho, tmp_path):
    from actionnet.mqtt import MqttSink

    b = broker()
    sub = Subscriber(paho, b.port, ["q/events"])
    b.stop()
    wait_for(lambda: not sub.subscribed.is_set(), 20, "the subscriber to notice")
    queue, log = tmp_path / "q.jsonl", io.StringIO()
    first = MqttSink(b.uri("q"), queue=str(queue), drain_timeout=0.5, log=log)
    for i in range(30):
        first.write({"event": "classification", "frame": i})
    first.close()
    assert first.undelivered == 30 and f"30 not delivered: kept in {queue} for the next run" in log.getvalue()
    assert len(queue.read_text().splitlines()) == 30
    b.start()
    wait_for(sub.subscribed.is_set, 20, "the subscriber to subscribe again")
    second = MqttSink(b.uri("q"), queue=str(queue), log=log)
    assert f"30 events an earlier run left in {queue} go first" in log.getvalue()
    for i in range(5):
        second.write({"event": "classification", "frame": 100 + i})
    second.close()
    got = unique(sub.events("q/events"))
    assert [(e["run"], e["seq"]) for e in got] == ([(first.run_id, i) for i in range(1, 31)]
                                                  + [(second.run_id, i) for i in range(1, 6)])
    assert [e["frame"] for e in got] == list(range(30)) + list(range(100, 105))
    assert not queue.exists()
    sub.close()


def test_per_person_states_are_retained_while_the_person_has_a_label(broker, paho):
    from actionnet.mqtt import MqttSink

    b = broker()
    watcher = Subscriber(paho, b.port, ["door/state/#"])
    sink = MqttSink(b.uri("door"), log=io.StringIO())
    for e in ({"event": "classification", "track_id": 1, "frame": 10, "time": 1.0, "reported_label": "wave",
               "reported_class_id": 3, "segment_start_time": 0.5},
              {"event": "classification", "track_id": 2, "frame": 10, "time": 1.0, "reported_label": None},
              {"event": "classification", "track_id": 3, "frame": 10, "time": 1.0, "reported_label": "run"},
              {"event": "segment", "track_id": 3, "label": "run", "reason": "evicted"}):
        sink.write(e)
    seen = lambda: {t: p for t, p, _ in watcher.messages}  # noqa: E731 - the latest payload per topic
    wait_for(lambda: seen().get("door/state/3") == b"" and "door/state/2" in seen() and "door/state/1" in seen(),
             20, "the states at the broker")
    late = Subscriber(paho, b.port, ["door/state/#"])
    wait_for(lambda: late.on("door/state/1"), 10, "the retained state of person 1")
    time.sleep(0.5)
    assert {t for t, _, _ in late.messages} == {"door/state/1"}  # 2 has no action, 3 has left
    (payload, retained), = late.on("door/state/1")
    assert retained and json.loads(payload) == {"label": "wave", "class_id": 3, "since": 0.5, "frame": 10,
                                                "time": 1.0, "run": sink.run_id, "track_id": 1}
    sink.close()
    wait_for(lambda: late.on("door/state/1")[-1][0] == b"", 10, "person 1's state to be removed at the end")
    late.close()
    watcher.close()


# ---------------------------------------------------------------------------------------------
# The command against a real broker


def test_every_line_of_the_events_file_arrives_in_order_with_state_and_status(broker, paho, synthetic_model,
                                                                               synthetic_video, tmp_path):
    b = broker()
    sub = Subscriber(paho, b.port, ["cam/#"])
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--mqtt-discovery", "--events", ev,
                "--events", b.uri("cam"), synthetic_video("blue left slow"), timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = file_lines(ev)
    wait_for(lambda: len(unique(sub.events("cam/events"))) >= len(lines), 20, "every event")
    got = unique(sub.events("cam/events"))
    assert [e["seq"] for e in got] == list(range(1, len(lines) + 1))
    assert [as_file_line(e) for e in got] == lines
    assert got[-1]["event"] == "summary" and got[-1]["mqtt_dropped"] == 0
    assert f"cam: {len(lines)} events published (run {got[0]['run']})" in r.stderr
    states = [json.loads(p) for p, _ in sub.on("cam/state")]
    reported = [e["reported_label"] for e in lines if e["event"] == "classification"]
    changes = [label for i, label in enumerate(reported) if i == 0 or label != reported[i - 1]]
    assert "blue left slow" in changes
    assert [s["label"] for s in states] == changes + [None]  # each reported label as it came, then the end
    assert states[0]["frame"] == lines[0]["frame"] and states[0]["since"] == lines[0]["segment_start_time"]
    wait_for(lambda: [p for p, _ in sub.on("cam/status")][-1:] == [b"offline"], 10, "offline")
    assert [p for p, _ in sub.on("cam/status")] == [b"online", b"offline"]
    config = json.loads(_retained(paho, b.port, "homeassistant/sensor/actionnet_cam/action/config"))
    assert config["state_topic"] == "cam/state" and config["availability_topic"] == "cam/status"
    sub.close()


def _retained(paho, port, topic) -> bytes:
    late = Subscriber(paho, port, [topic])
    try:
        wait_for(lambda: late.on(topic), 10, f"the retained {topic}")
        return late.on(topic)[0][0]
    finally:
        late.close()


def test_broker_killed_mid_run_and_restarted_5s_later_loses_no_event(broker, paho, synthetic_model, synthetic_video,
                                                                     tmp_path):
    b = broker()
    sub = Subscriber(paho, b.port, ["cam/events"], client_id="dashboard")
    saves = b.saves()  # the second save from now on began after the subscription: it holds it
    wait_for(lambda: b.saves() >= saves + 2, 20, "the broker to save the subscriber's session")
    ev, err = tmp_path / "ev.jsonl", tmp_path / "stderr.txt"
    with open(err, "w") as ef:
        p = subprocess.Popen(cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--live",
                                 "--input-loop=-1", "--reconnect-timeout=60", "--events", ev, "--events", b.uri("cam"),
                                 synthetic_video("red right slow")), stdout=subprocess.DEVNULL, stderr=ef)
    try:
        wait_for(lambda: len(sub.on("cam/events")) >= 30, 120, "events before the kill", p, err)
        b.kill()
        killed = time.monotonic()
        wait_for(lambda: "connection lost" in err.read_text(), 30, "the sink to notice", p, err)
        time.sleep(max(0.0, killed + 5.0 - time.monotonic()))
        before = len(unique(sub.events("cam/events")))
        b.start()
        wait_for(lambda: "connected;" in err.read_text(), 60, "the sink to reconnect", p, err)
        wait_for(lambda: len(unique(sub.events("cam/events"))) >= before + 60, 60, "events after the restart", p, err)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=60)
    stderr = err.read_text()
    assert rc == 0 and "Traceback" not in stderr, stderr
    lines = file_lines(ev)
    wait_for(lambda: len(unique(sub.events("cam/events"))) >= len(lines), 30, "the last events")
    received = sub.events("cam/events")
    got = unique(received)
    assert [e["seq"] for e in got] == list(range(1, len(lines) + 1)), "missing or out of order after de-duplication"
    assert [as_file_line(e) for e in got] == lines
    queued = int(stderr.split("connected; ")[1].split()[0])
    assert queued > 0, stderr  # events made while the broker was down, sent after it came back
    print(f"{len(lines)} events, {queued} queued across the restart, {len(received) - len(got)} duplicates, "
          f"0 missing")
    sub.close()


def test_retained_state_and_last_will_reach_a_late_subscriber_after_kill_9(broker, paho, synthetic_model,
                                                                            synthetic_video, tmp_path):
    b = broker()
    watcher = Subscriber(paho, b.port, ["cam/#"])
    err = tmp_path / "stderr.txt"
    with open(err, "w") as ef:
        # --min-duration: the label flickers where the loop jumps back, the reported label does not
        p = subprocess.Popen(cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--live",
                                 "--input-loop=-1", "--min-duration=1", "--events", b.uri("cam"),
                                 synthetic_video("red left slow")),
                             stdout=subprocess.DEVNULL, stderr=ef)
    try:
        labelled = lambda: [p for p, _ in watcher.on("cam/state") if json.loads(p)["label"]]  # noqa: E731
        wait_for(labelled, 120, "a reported label", p, err)
        # a dashboard that connects mid-run is told the camera is online (retained), not only later ones
        midway = Subscriber(paho, b.port, ["cam/status"])
        wait_for(lambda: midway.on("cam/status"), 10, "the retained status mid-run")
        assert midway.on("cam/status") == [(b"online", True)]
        midway.close()
    finally:
        p.kill()  # SIGKILL: no offline of its own, no cleared state
        p.wait(timeout=30)
    wait_for(lambda: (b"offline", False) in watcher.on("cam/status"), 30, "the last will")
    last_state = watcher.on("cam/state")[-1][0]
    assert json.loads(last_state)["label"] == "red left slow"
    late = Subscriber(paho, b.port, ["cam/state", "cam/status"])
    wait_for(lambda: late.on("cam/state") and late.on("cam/status"), 10, "the retained messages")
    assert late.on("cam/status") == [(b"offline", True)]
    assert late.on("cam/state") == [(last_state, True)]
    late.close()
    watcher.close()


def test_broker_down_at_start_the_run_goes_on_and_its_events_follow_when_it_comes(broker, paho, synthetic_model,
                                                                                   synthetic_video, tmp_path):
    b = broker()
    sub = Subscriber(paho, b.port, ["cam/events"], client_id="late-dashboard")
    b.stop()  # a clean stop saves the subscriber's session
    ev, err = tmp_path / "ev.jsonl", tmp_path / "stderr.txt"
    with open(err, "w") as ef:
        p = subprocess.Popen(cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--events", ev,
                                 "--events", b.uri("cam"), synthetic_video("blue right slow")),
                             stdout=subprocess.DEVNULL, stderr=ef)
    try:
        wait_for(lambda: "broker unreachable (connection refused)" in err.read_text(), 60, "the first try", p, err)
        b.start()
        rc = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    stderr = err.read_text()
    assert rc == 0 and "Traceback" not in stderr, stderr
    lines = file_lines(ev)
    assert "connected; " in stderr and f"{len(lines)} events published" in stderr, stderr
    wait_for(lambda: len(unique(sub.events("cam/events"))) >= len(lines), 30, "the queued events")
    assert [as_file_line(e) for e in unique(sub.events("cam/events"))] == lines
    sub.close()


def test_a_stop_waits_a_bounded_time_for_an_absent_broker_and_a_second_ctrl_c_ends_the_wait(
        paho, synthetic_model, synthetic_video, tmp_path):
    from actionnet.mqtt import DRAIN_S

    ev, err = tmp_path / "ev.jsonl", tmp_path / "stderr.txt"
    with open(err, "w") as ef:
        p = subprocess.Popen(cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--live",
                                 "--input-loop=-1", "--events", ev, "--events", f"mqtt://127.0.0.1:{free_port()}/cam",
                                 synthetic_video("red left slow")), stdout=subprocess.DEVNULL, stderr=ef)
    try:
        wait_for(lambda: ev.exists() and ev.read_text().count("\n") >= 10, 120, "events", p, err)
        p.send_signal(signal.SIGINT)
        wait_for(lambda: "waiting up to" in err.read_text(), 30, "the drain", p, err)
        assert file_lines(ev)[-1]["event"] == "summary"  # the file was finished before the broker's wait
        p.send_signal(signal.SIGINT)
        t = time.monotonic()
        rc = p.wait(timeout=60)
        second = time.monotonic() - t
    finally:
        if p.poll() is None:
            p.kill()
    stderr = err.read_text()
    assert rc == 0 and "Traceback" not in stderr, stderr
    assert second < DRAIN_S, f"the second Ctrl-C did not end the wait ({second:.1f} s)"
    n = len(file_lines(ev))
    assert "0 events published" in stderr and f"{n} not delivered: lost" in stderr, stderr


def test_logins_a_wrong_password_is_one_line_before_the_model_loads(broker, paho, synthetic_model,
                                                                    synthetic_video, tmp_path):
    b = broker(password="right")
    video = synthetic_video("red left slow")
    for user in ("cam:wrong@", ""):
        r = run_cli("--model", tmp_path / "none.onnx", "--headless", "--events", b.uri("cam", user), video)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "the broker refused the connection: Not authorized" in lines[0] and "wrong" not in lines[0], lines
    sub = Subscriber(paho, b.port, ["cam/events"], password="right")
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--events", ev,
                "--events", b.uri("cam", "cam:right@"), video)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(sub.on("cam/events")) >= len(file_lines(ev)), 20, "the events")
    sub.close()


def test_a_broker_that_comes_back_refusing_the_login_is_said_once_and_retried(broker, paho):
    """Mid-run a refusal is not the user's typo but a broker that changed: the run goes on."""
    from actionnet.mqtt import MqttSink

    b = broker(password="right")
    b.stop()
    log = io.StringIO()
    sink = MqttSink(b.uri("cam", "cam:wrong@"), drain_timeout=0.5, log=log)
    assert "broker unreachable (connection refused)" in log.getvalue()
    b.start()
    wait_for(lambda: "the broker refused the connection: Not authorized" in log.getvalue(), 30, "the refusal")
    sink.write({"event": "classification", "frame": 1})  # no error: the sink keeps queueing and retrying
    sink.close()
    assert sink.undelivered == 1 and log.getvalue().count("refused the connection") == 1, log.getvalue()


@pytest.fixture
def certificates(tmp_path):
    """A private CA and a server certificate for 127.0.0.1 it signed (openssl)."""
    openssl = shutil.which("openssl")
    _needs("openssl", bool(openssl), "apt-get install openssl")
    d = tmp_path / "tls"
    d.mkdir()

    def ssl(*args):
        subprocess.run([openssl, *map(str, args)], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=actionnet test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.cnf")
    os.chmod(d / "server.key", 0o644)
    return d


def test_mqtts_with_a_private_ca_and_without_it_one_line(broker, paho, certificates, synthetic_model,
                                                         synthetic_video, tmp_path):
    b = broker(tls=(certificates / "server.crt", certificates / "server.key"))
    video = synthetic_video("blue left slow")
    uri = b.uri("cam", scheme="mqtts")
    r = run_cli("--model", tmp_path / "none.onnx", "--headless", "--events", uri, video)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "TLS failed: certificate verify failed" in lines[0] and "--mqtt-ca" in lines[0], lines
    sub = Subscriber(paho, b.port, ["cam/events"], tls_ca=certificates / "ca.crt")
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--events", ev, "--events", uri,
                "--mqtt-ca", certificates / "ca.crt", video)
    assert r.returncode == 0, r.stderr
    n = len(file_lines(ev))
    assert f"{n} events published" in r.stderr
    wait_for(lambda: len(sub.on("cam/events")) >= n, 20, "the events over TLS")
    r = run_cli("--model", tmp_path / "none.onnx", "--headless", "--events", b.uri("cam"), video)
    assert r.returncode == 2 and "closed the connection without answering (a TLS port? use mqtts://)" in r.stderr
    sub.close()
