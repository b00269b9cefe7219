"""Events to an MQTT broker: ``--events mqtt://[USER[:PASS]@]HOST[:PORT]/TOPIC`` (``mqtts://``: TLS).

Where a camera's events are acted on (a dashboard, an alarm, Home Assistant, Node-RED), they
arrive through a broker. Topics under TOPIC:

- ``TOPIC/events``: every events line, as the events file holds it, plus ``run`` (one id per run)
  and ``seq`` (1, 2, ... per run), QoS 1. QoS 1 may deliver a message twice (a resend after a
  lost acknowledgement): a consumer drops a ``(run, seq)`` it has seen. The ``summary`` line adds
  ``mqtt_dropped``, the events this sink had to drop.
- ``TOPIC/state``: the stream's reported label, retained, published when it changes, so a
  dashboard that connects later sees the present; per person ``TOPIC/state/TRACK``, retained while
  the person has a label and removed when they leave. At the end of a run the stream's label is null.
- ``TOPIC/status``: ``online``, retained; ``offline`` at the end of a run and, as the last will,
  when the process dies (kill -9, a power cut: the broker notices the lost connection).

Why a queue of our own, not paho's: paho keeps what it could not send in memory, unbounded, and
loses it when the process exits. Here every event stays in the sink's :class:`Backlog` until the
broker acknowledges it (PUBACK): bounded (the oldest dropped beyond ``queue_size``, said in one
line and in the summary), optionally spilling to a file that outlives the process, and sent in
order. paho does the protocol: connecting, reconnecting with backoff, resending what was in flight
when a connection broke (it does so before anything newer is handed to it; see ``_work``).

Nothing here runs on the frame loop but :meth:`MqttSink.write`, which serialises the event and
appends it to a queue: publishing is a thread of its own, so a slow or absent broker never slows
the run. What a broker
does with an event after acknowledging it is the broker's durability: a subscriber with a
persistent session (clean session off, QoS 1) on a broker with persistence receives every event
across a broker restart (tests/test_mqtt.py kills Mosquitto with SIGKILL mid-run).

paho-mqtt is the ``[mqtt]`` extra; without it a broker URI fails in one line that names it, and
importing this module never needs it.
"""

from __future__ import annotations

import collections
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlsplit

from .config import redact
from .errors import MissingLibraryError, OutputError, UsageError
from .outputs import Events

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
QUEUE_SIZE = 10_000  # events kept while the broker is away: minutes of a camera, a few MB
FILE_QUEUE_SIZE = 1_000_000  # with --mqtt-queue FILE: the file holds what memory does not
MEMORY_WITH_FILE = 1_000  # events kept in memory when a file takes the rest
WINDOW = 16  # messages handed to paho and not yet acknowledged, at most
DRAIN_S = 10.0  # how long close() waits for the queue to reach the broker
KEEPALIVE_S = 15  # a silent broker is noticed after 1.5x this; a killed one at once
EXTRA = "pip install 'actionnet[mqtt]'"


def is_broker(uri: str) -> bool:
    """``mqtt://`` or ``mqtts://``: an events sink this module opens."""
    return "://" in uri and uri.split("://", 1)[0].lower() in SCHEMES


@dataclass(frozen=True)
class Broker:
    """A parsed broker URI. ``shown`` leaves the password out: it is what log lines print."""

    tls: bool
    host: str
    port: int
    topic: str
    user: Optional[str] = None
    password: Optional[str] = None

    @property
    def shown(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}/{self.topic}"


def parse_uri(uri: str) -> Broker:
    """``mqtt[s]://[USER[:PASS]@]HOST[:PORT]/TOPIC``; user and password may be %-escaped."""
    usage = "expected mqtt://[USER[:PASS]@]HOST[:PORT]/TOPIC (or mqtts:// for TLS)"
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise UsageError(f"--events {uri}: {usage}")
    u = urlsplit(uri)
    shown = redact(uri)
    topic = unquote(u.path[1:])
    if u.fragment or "+" in topic or "#" in uri.split("://", 1)[1]:
        raise UsageError(f"--events {shown}: a topic to publish to has no wildcards (+, #); "
                         f"a # in a password is written %23")
    try:
        port = u.port
    except ValueError:
        port = 0
    if port == 0:
        raise UsageError(f"--events {shown}: the port must be a number from 1 to 65535")
    if not u.hostname:
        raise UsageError(f"--events {shown}: no broker host; {usage}")
    if u.query:
        raise UsageError(f"--events {shown}: no ?options in a broker URI; see actionnet --help for the --mqtt-* flags")
    if not topic or topic.startswith("/") or topic.endswith("/") or "//" in topic:
        raise UsageError(f"--events {shown}: no topic, or an empty level in it; {usage}, e.g. mqtt://broker/actionnet/kitchen")
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password is not None else None
    return Broker(scheme == "mqtts", u.hostname, port or SCHEMES[scheme], topic, user, password)


def paho_client(uri: str):
    """paho-mqtt's client module, or one line naming the extra that brings it."""
    try:
        from paho.mqtt import client
    except ImportError:
        raise MissingLibraryError(f"--events {parse_uri(uri).shown} needs paho-mqtt: {EXTRA}") from None
    return client


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {e.verify_message}"
    return getattr(e, "verify_message", None) or getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e) or type(e).__name__


class Backlog:
    """The events the broker has not acknowledged yet, oldest first, at most ``limit``.

    In memory; with ``path``, the first ``memory`` in memory and the rest appended to the file,
    which is read back in order as memory empties. A full backlog drops its oldest and counts
    them (``dropped``). The file outlives the process: :meth:`save` writes what is left into it,
    and a backlog opened on a file that holds lines starts with them (``carried``), so a run
    stopped while its broker was away hands its events to the next run. Lines cut by a crash are
    cut off; lines that were read back before a crash are sent again (consumers drop duplicates).
    Only the sink's thread touches a backlog.
    """

    def __init__(self, limit: int = QUEUE_SIZE, path: Optional[str] = None, memory: int = MEMORY_WITH_FILE):
        if limit < 1:
            raise UsageError(f"--mqtt-queue-size must be >= 1, got {limit}")
        self.limit = limit
        self.path = path
        self.memory = min(memory, limit) if path else limit
        self.head: collections.deque = collections.deque()
        self.dropped = 0
        self.spilled = 0  # lines in the file after self._read
        self._read = 0
        self._f = None
        if path:
            try:
                self._f = open(path, "a+b")
                self._f.seek(0)
                whole = 0
                for line in self._f:  # what an earlier run left
                    if not line.endswith(b"\n"):  # cut by a crash: only the last line can be
                        break
                    self.spilled += 1
                    whole += len(line)
                self._f.truncate(whole)
            except OSError as e:
                raise OutputError(f"--mqtt-queue {path}: {_reason(e)}") from None
        self.carried = self.spilled

    def __len__(self) -> int:
        return len(self.head) + self.spilled

    def push(self, payload: bytes) -> None:
        if self._f is not None and (self.spilled or len(self.head) >= self.memory):
            self._f.write(payload + b"\n")  # O_APPEND: always at the end
            self._f.flush()
            self.spilled += 1
        else:
            self.head.append(payload)
        while len(self) > self.limit:
            self.pop()
            self.dropped += 1

    def pop(self) -> bytes:
        if not self.head and self.spilled:
            self._refill()
        return self.head.popleft()

    def peek(self) -> bytes:
        if not self.head and self.spilled:
            self._refill()
        return self.head[0]

    def _refill(self) -> None:
        self._f.seek(self._read)
        while self.spilled and len(self.head) < self.memory:
            self.head.append(self._f.readline().rstrip(b"\n"))
            self.spilled -= 1
        self._read = self._f.tell()
        if not self.spilled:  # all read back: the file starts again from nothing
            self._f.truncate(0)
            self._read = 0

    def save(self, front=()) -> int:
        """Write ``front`` (sent, not acknowledged) and the rest into the file for the next run;
        remove the file when nothing is left. Returns how many events it holds."""
        if self._f is None:
            return 0
        n = len(front) + len(self)
        tmp = f"{self.path}.tmp{os.getpid()}"
        try:
            if n:
                with open(tmp, "wb") as out:
                    for p in list(front) + list(self.head):
                        out.write(p + b"\n")
                    self._f.seek(self._read)
                    for chunk in iter(lambda: self._f.read(1 << 20), b""):
                        out.write(chunk)
                os.replace(tmp, self.path)
            self._f.close()
            if not n:
                os.remove(self.path)
        except OSError as e:
            raise OutputError(f"cannot save the MQTT queue to {self.path}: {_reason(e)}") from None
        finally:
            self._f = None
        return n


_SINKS: "weakref.WeakSet" = weakref.WeakSet()  # open sinks, for abandon_drains()


def abandon_drains() -> None:
    """Stop every sink's wait for its queue to reach the broker: a second Ctrl-C under
    ``--config``, where the sinks close on the cameras' threads and the interrupt reaches the
    main thread only. What is left is kept in the ``--mqtt-queue`` file, as after a lone run's."""
    for sink in list(_SINKS):
        sink.abandon()


class MqttSink(Events):
    """Every event to ``TOPIC/events`` (QoS 1, ``run`` and ``seq`` added), the reported label to
    ``TOPIC/state``, ``online``/``offline`` to ``TOPIC/status``; see the module docstring.

    The constructor connects, so that a bad URI, a refused login or a TLS failure raises one
    error before anything else happens (the CLI opens brokers before the model loads). A broker
    that does not answer is retried in the background (every 0.25 s to 4 s, as a camera is) while
    events queue; after ``reconnect_timeout`` seconds the sink says so once and keeps retrying,
    because an events sink never ends a run: a broker that comes back refusing the login (its
    users changed) is said in one line and retried too. :meth:`close` waits up to
    ``drain_timeout`` seconds for the queue to reach the broker.
    """

    def __init__(self, uri: str, ca: Optional[str] = None, queue: Optional[str] = None,
                 queue_size: Optional[int] = None, reconnect_timeout: float = 30.0, drain_timeout: float = DRAIN_S,
                 discovery: bool = False, log=sys.stderr, connect_timeout: float = 5.0):
        self.broker = b = parse_uri(uri)
        self.uri, self.shown, self.topic = uri, b.shown, b.topic
        mqtt = paho_client(uri)
        self.log = log
        self.run_id = uuid.uuid4().hex[:12]
        self.seq = 0
        self.published = 0  # events the broker acknowledged
        self.undelivered = 0  # events left when close() stopped waiting
        self.reconnect_timeout, self.drain_timeout, self.discovery = reconnect_timeout, drain_timeout, discovery
        self.backlog = Backlog(queue_size or (FILE_QUEUE_SIZE if queue else QUEUE_SIZE), queue)
        # the frame loop's side
        self._inbox: collections.deque = collections.deque()  # events, write() -> the sink's thread
        self._inbox_dropped = 0
        self._state_inbox: collections.deque = collections.deque()  # (state topic, payload or None)
        self._shown: dict = {}  # state topic -> the label last put in the inbox
        self._last = (None, None)  # frame, time of the latest event
        self._closed = False
        # paho's thread -> the sink's thread
        self._acks: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._answered = threading.Event()  # the first CONNACK (either way), or the connection closed
        self._connected = False
        self._generation = 0  # successful connections so far
        self._lost = ""  # why the last connection ended, as " (why)"
        self._error: Optional[OutputError] = None  # a refused login at start, a full disk: raised by write()
        self._starting = True  # until the constructor returns: a refused login is an error
        self._refused: Optional[str] = None  # why the broker refused the latest connection (mid-run)
        # the sink's thread only
        self._handed: "collections.OrderedDict[int, tuple]" = collections.OrderedDict()  # mid -> (kind, payload)
        self._states: dict = {}  # state topic -> payload (None: remove it), to publish
        self._retained: dict = {}  # state topic -> payload, published again on every connection
        self._down_since: Optional[float] = None
        self._stop_at: Optional[float] = None  # set by close()
        self._abandon = False  # a second Ctrl-C during close()
        _SINKS.add(self)
        self._said_full = False
        self._client = self._make_client(mqtt, ca)
        self._connect(connect_timeout)
        self._starting = False
        self._thread = threading.Thread(target=self._work, name="actionnet-mqtt", daemon=True)
        self._thread.start()

    # -- the frame loop's side: never waits for the broker -------------------------------------

    @property
    def dropped(self) -> int:
        """Events dropped, the oldest first, because the queue was full."""
        return self.backlog.dropped + self._inbox_dropped

    def write(self, event: dict) -> None:
        if self._error is not None:
            raise self._error
        self.seq += 1
        ev = {"run": self.run_id, "seq": self.seq, **event}
        if event.get("event") == "summary":  # always, so that 0 reads as "none dropped"
            ev["mqtt_dropped"] = self.dropped
        self._inbox.append(json.dumps(ev, separators=(",", ":")).encode("utf-8"))
        if len(self._inbox) > self.backlog.limit:  # the sink's thread is stuck (a slow disk): bounded anyway
            try:
                self._inbox.popleft()
                self._inbox_dropped += 1
            except IndexError:  # the sink's thread took them meanwhile
                pass
        self._state_inbox.extend(self._state_changes(event))
        self._wake.set()

    def _state_changes(self, event: dict):
        """(state topic, payload or None to remove it) for the reported labels ``event`` changes."""
        kind, tid = event.get("event"), event.get("track_id")
        sub = "state" if tid is None else f"state/{tid}"
        if "frame" in event:
            self._last = (event.get("frame"), event.get("time"))
        if kind == "classification":
            label = event.get("reported_label", event.get("label"))
            if sub in self._shown and self._shown[sub] == label:
                return []
            self._shown[sub] = label
            if tid is not None and label is None:  # a person with no action holds no retained state
                return [(sub, None)]
            return [(sub, self._state(label, event.get("reported_class_id", event.get("class_id")),
                                      event.get("segment_start_time", event.get("time")), tid))]
        if kind == "segment" and tid is not None and event.get("reason") not in ("change", "below_threshold"):
            if self._shown.pop(sub, None) is not None:  # the person left, or the stream restarted
                return [(sub, None)]
        return []

    def _state(self, label, class_id, since, tid=None) -> bytes:
        frame, t = self._last
        s = {"label": label, "class_id": -1 if class_id is None else class_id, "since": since,
             "frame": frame, "time": t, "run": self.run_id}
        if tid is not None:
            s["track_id"] = tid
        return json.dumps(s, separators=(",", ":")).encode("utf-8")

    def close(self, keep: bool = True) -> None:
        """Wait up to ``drain_timeout`` s for the queue to reach the broker (a second Ctrl-C stops
        waiting), clear the states, say ``offline``, disconnect; then say in one line what was
        published, dropped and left (kept in the ``--mqtt-queue`` file for the next run, or lost)."""
        if self._closed:
            return
        self._closed = True
        for sub, label in self._shown.items():  # the run is over: nobody is doing anything now
            if sub == "state":
                self._state_inbox.append((sub, self._state(None, -1, self._last[1])))
            elif label is not None:
                self._state_inbox.append((sub, None))
        self._shown.clear()
        self._stop_at = time.monotonic() + self.drain_timeout
        self._wake.set()
        try:
            self._thread.join(min(0.5, self.drain_timeout))
            if self._thread.is_alive():
                print(f"actionnet: {self.shown}: waiting up to {self.drain_timeout:g} s for the queue to reach the "
                      f"broker (Ctrl-C again: stop waiting)", file=self.log)
                self._thread.join(self.drain_timeout + 5.0)
        except KeyboardInterrupt:
            self.abandon()
            self._thread.join(5.0)
        self._client.loop_stop()
        line = f"{self.published} {_plural(self.published, 'event')} published (run {self.run_id})"
        if self.dropped:
            line += f"; {self.dropped} oldest dropped (queue full at {self.backlog.limit})"
        if self.undelivered:
            where = (f"kept in {self.backlog.path} for the next run" if self.backlog.path
                     else "lost (--mqtt-queue FILE keeps them for the next run)")
            line += f"; {self.undelivered} not delivered: {where}"
        print(f"actionnet: {self.shown}: {line}", file=self.log)

    def abandon(self) -> None:
        self._abandon = True
        wake = getattr(self, "_wake", None)  # a sink whose __init__ failed half-way has none
        if wake is not None:
            wake.set()

    # -- connecting; paho's thread calls the _on_* methods --------------------------------------

    def _make_client(self, mqtt, ca):
        b = self.broker
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"actionnet-{self.run_id}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        if b.user is not None:
            c.username_pw_set(b.user, b.password)
        if b.tls:  # ``ca`` serves mqtts:// only (a plain broker beside a TLS one ignores it)
            try:
                c.tls_set(ca_certs=ca)  # None: the system's CA store; host names are checked
            except (ssl.SSLError, OSError) as e:
                raise OutputError(f"--mqtt-ca {ca}: not a CA certificate (PEM): {_reason(e)}") from None
        c.will_set(f"{b.topic}/status", "offline", qos=1, retain=True)
        c.reconnect_delay_set(0.25, 4)  # as a camera is retried (runtime/sources.py, Reconnecting)
        c.max_inflight_messages_set(WINDOW + 8)  # ours plus status and discovery: nothing waits inside paho
        c.on_connect, c.on_disconnect, c.on_publish = self._on_connect, self._on_disconnect, self._on_publish
        return c

    def _connect(self, timeout: float) -> None:
        """Connect once, now: a refused login or a TLS failure is an error before the model loads;
        a broker that does not answer is retried in the background by paho."""
        b, c = self.broker, self._client
        try:
            c.connect(b.host, b.port, keepalive=KEEPALIVE_S)
        except ssl.SSLError as e:
            why = _reason(e)
            hint = (" (a private CA? --mqtt-ca FILE)" if "verif" in str(e).lower() else
                    f" (is {b.port} a TLS port?)" if "version" in str(e).lower() else "")
            raise OutputError(f"{b.shown}: TLS failed: {why}{hint}") from None
        except OSError as e:
            self._unreachable(_reason(e))
            self._starting = False  # from here on, as any broker that comes later
            c.connect_async(b.host, b.port, keepalive=KEEPALIVE_S)
            c.loop_start()
            return
        c.loop_start()
        if not self._answered.wait(timeout):
            self._unreachable(f"no answer in {timeout:g} s")
            self._starting = False  # from here on, as any broker that comes later
            return
        if self._error is not None or not self._connected:
            c.disconnect()
            c.loop_stop()
            raise self._error or OutputError(f"{b.shown}: the broker closed the connection without answering"
                                             f"{'' if b.tls else ' (a TLS port? use mqtts://)'}")
        carried = (f"; {self.backlog.carried} events an earlier run left in {self.backlog.path} go first"
                   if self.backlog.carried else "")
        print(f"actionnet: events to {b.shown}: {b.topic}/events, /state, /status (run {self.run_id}){carried}",
              file=self.log)

    def _unreachable(self, why: str) -> None:
        self._down_since = time.monotonic()
        print(f"actionnet: {self.shown}: broker unreachable ({why}); retrying while the run goes on, "
              f"events are queued (at most {self.backlog.limit})", file=self.log)

    def _on_connect(self, client, userdata, flags, reason, properties=None):
        if reason.is_failure:
            hint = " (check the user name and password)" if _login(reason) else ""
            self._refused = f"the broker refused the connection: {reason}{hint}"
            if self._starting:  # an error before the model loads; later, a broker that changed is retried
                self._error = OutputError(f"{self.shown}: {self._refused}")
                client.disconnect()
        else:
            self._refused = None
            self._connected = True
            self._generation += 1
        self._answered.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties=None):
        self._connected = False
        self._lost = "" if "unspecified" in str(reason).lower() else f" ({reason})"  # a closed socket says nothing more
        self._answered.set()
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason=None, properties=None):
        self._acks.append(mid)
        self._wake.set()

    # -- the sink's thread: inbox -> backlog -> paho, in order ---------------------------------

    def _work(self) -> None:
        """Until :meth:`close` asks and the queue is empty (or its time is up): move the inbox
        into the backlog, hand the backlog to paho ``WINDOW`` at a time, forget what the broker
        acknowledged. Then the last words (states cleared, ``offline``), and what is left goes
        into the queue file."""
        seen, hold, warned, said_refused, dropped_before = 0, False, False, False, 0
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            self._take_inbox()
            self._take_acks()
            now = time.monotonic()
            if self._connected:
                if self._generation != seen:  # a new connection
                    if seen or self._down_since is not None:
                        n = len(self.backlog)
                        lost = self.dropped - dropped_before
                        print(f"actionnet: {self.shown}: connected; {n} queued {_plural(n, 'event')} follow"
                              f"{f', {lost} oldest were dropped (queue full)' if lost else ''}", file=self.log)
                    seen, warned, said_refused, self._down_since = self._generation, False, False, None
                    # paho resends what was in flight first: nothing newer until it is acknowledged,
                    # so the broker receives events in seq order (duplicates aside)
                    hold = self._events_in_flight() > 0
                    self._publish("status", f"{self.topic}/status", b"online", retain=True)
                    if self.discovery:
                        self._publish("status", *discovery_config(self.topic), retain=True)
                    for sub, payload in self._retained.items():  # a restarted broker may have lost them
                        self._states.setdefault(sub, payload)
                hold = hold and self._events_in_flight() > 0
                while not hold and len(self._handed) < WINDOW - 4 and len(self.backlog):
                    if not self._publish("event", f"{self.topic}/events", self.backlog.peek()):
                        break
                    self.backlog.pop()
                while self._states and len(self._handed) < WINDOW:
                    sub = next(iter(self._states))
                    self._publish("state", f"{self.topic}/{sub}", self._states.pop(sub) or b"", retain=True)
            elif self._down_since is None:
                self._down_since = now
                dropped_before = self.dropped
                if seen:
                    print(f"actionnet: {self.shown}: connection lost{self._lost}; reconnecting, events are queued",
                          file=self.log)
            elif self._refused and not said_refused:
                said_refused = True
                print(f"actionnet: warning: {self.shown}: {self._refused}; retrying, events are queued", file=self.log)
            elif not warned and now - self._down_since >= self.reconnect_timeout:
                warned = True
                print(f"actionnet: warning: {self.shown}: broker unreachable for {now - self._down_since:.0f} s "
                      f"(--reconnect-timeout); still retrying, {len(self.backlog)} events queued", file=self.log)
            if self._stop_at is not None and (self._abandon or now >= self._stop_at or not (
                    self._inbox or len(self.backlog) or self._events_in_flight())):
                break
        self._last_words()
        self._take_inbox()
        left = [p for k, p in self._handed.values() if k == "event"]
        self.undelivered = len(left) + len(self.backlog)
        try:
            self.backlog.save(left)
        except OutputError as e:
            print(f"actionnet: warning: {e}", file=self.log)

    def _last_words(self) -> None:
        """The states close() cleared and ``offline``, acknowledged within 2 s (a clean
        disconnect sends no last will), then disconnect. The states close() queued are taken in
        first: the worker may have left its loop between its last look and the stop."""
        self._take_inbox()
        if not self._connected:
            return
        if not self._abandon:
            for sub in list(self._states):
                self._publish("state", f"{self.topic}/{sub}", self._states.pop(sub) or b"", retain=True)
            self._publish("status", f"{self.topic}/status", b"offline", retain=True)
            by = time.monotonic() + 2.0
            while self._connected and any(k != "event" for k, _ in self._handed.values()) \
                    and time.monotonic() < by and not self._abandon:
                self._wake.wait(0.1)
                self._wake.clear()
                self._take_acks()
        self._client.disconnect()

    def _take_inbox(self) -> None:
        try:
            while self._inbox:
                self.backlog.push(self._inbox.popleft())
        except OSError as e:  # the queue file: a full disk is said, not hidden
            self._error = OutputError(f"cannot write the MQTT queue to {self.backlog.path}: {_reason(e)}")
            self._abandon = True
        if self.dropped and not self._said_full:
            self._said_full = True
            print(f"actionnet: warning: {self.shown}: queue full ({self.backlog.limit} events): dropping the oldest "
                  f"(--mqtt-queue-size N, --mqtt-queue FILE keep more)", file=self.log)
        while self._state_inbox:
            sub, payload = self._state_inbox.popleft()
            self._states[sub] = payload
            if payload is None:
                self._retained.pop(sub, None)
            else:
                self._retained[sub] = payload

    def _take_acks(self) -> None:
        while self._acks:
            kind = self._handed.pop(self._acks.popleft(), (None,))[0]
            if kind == "event":
                self.published += 1

    def _events_in_flight(self) -> int:
        return sum(k == "event" for k, _ in self._handed.values())

    def _publish(self, kind: str, topic: str, payload: bytes, retain: bool = False) -> bool:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (0, 4):  # 4: not connected just now; paho keeps it and sends it on reconnect
            return False
        self._handed[info.mid] = (kind, payload)
        return True


def _login(reason) -> bool:
    return any(w in str(reason).lower() for w in ("password", "authori"))


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def discovery_config(topic: str):
    """Home Assistant MQTT discovery: the camera as a sensor whose state is the reported label."""
    node = re.sub(r"[^A-Za-z0-9_-]", "_", topic)
    config = {"name": "Action", "unique_id": f"actionnet_{node}_action", "state_topic": f"{topic}/state",
              "value_template": "{{ value_json.label or 'none' }}", "json_attributes_topic": f"{topic}/state",
              "availability_topic": f"{topic}/status", "icon": "mdi:motion-sensor",
              "device": {"identifiers": [f"actionnet_{node}"], "name": f"actionnet {topic}"}}
    return f"homeassistant/sensor/actionnet_{node}/action/config", json.dumps(config).encode("utf-8")


__all__ = ["Backlog", "Broker", "MqttSink", "is_broker", "paho_client", "parse_uri"]
