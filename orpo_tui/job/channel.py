"""The fork-safe metric channel between the training process and its RunActor.

Ray API calls hang inside eformer's forked training process (measured), so
the trainer talks to its actor over a plain pyzmq DEALER/ROUTER pair. Every
message carries the run's token; the receiver drops anything without it.
Stop requests travel back on the same socket as replies.
"""

from __future__ import annotations

import hmac
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

STOP = b"stop"


def _number(value: Any) -> float | str | None:
    """A logged value as JSON-able data (jax/numpy scalars become floats)."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Reporter:
    """Trainer side: sends metrics, logs and events; only process 0 sends."""

    def __init__(self, endpoint: str, token: str, *, primary: bool = True):
        self.primary = primary
        self.token = token
        self._stop = False
        self._tokens: tuple[int, int] | None = None
        self._step_started = time.perf_counter()
        self._lock = threading.Lock()
        self._sock = None
        self._out_fds: list[tuple[int, int]] = []
        self._pumps: list[threading.Thread] = []
        if primary:
            self._ctx = zmq.Context()
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 5000)
            sock.setsockopt(zmq.SNDHWM, 1_000_000)
            sock.connect(endpoint)
            self._sock = sock
            self._send({"k": "hello", "pid": os.getpid()})

    def _send(self, msg: dict[str, Any]) -> None:
        if self._sock is None:
            return
        msg["t"] = self.token
        data = json.dumps(msg, allow_nan=True).encode()
        with self._lock:
            try:
                self._sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                pass  # the actor is gone or far behind; training must not block on it

    def count_tokens(self, counts: tuple[int, int]) -> None:
        self._tokens = counts
        self._step_started = time.perf_counter()

    def metric(self, step: int, mode: str, metrics: dict[str, Any]) -> None:
        values: dict[str, Any] = {}
        for k, v in metrics.items():
            # Per-parameter gradient norms: hundreds of keys a step on a real model.
            if "/grad_norm/" in k:
                continue
            n = _number(v)
            if n is not None:
                values[k] = n
        derived: dict[str, float] = {}
        if mode == "train" and self._tokens is not None:
            real, padded = self._tokens
            step_time = values.get("train/step_time") or values.get("train-mlperf/step_time")
            if not isinstance(step_time, float) or not step_time > 0:
                step_time = time.perf_counter() - self._step_started
            derived.update(real_tokens=float(real), padded_tokens=float(padded), step_time_s=step_time)
            if step_time > 0:
                derived.update(real_tokens_per_s=real / step_time, padded_tokens_per_s=padded / step_time)
        self._send({"k": "metric", "step": int(step), "mode": mode, "time": time.time(),
                    "metrics": values, "derived": derived})

    def event(self, kind: str, **fields: Any) -> None:
        self._send({"k": "event", "kind": kind, "time": time.time(), **fields})

    def error(self, message: str, tb: str) -> None:
        self._send({"k": "event", "kind": "error", "time": time.time(), "message": message,
                    "traceback": tb})

    def log(self, line: str) -> None:
        self._send({"k": "log", "line": line})

    def stop_requested(self) -> bool:
        """Has the actor asked for a stop? Agreed across hosts so all break at one step."""
        if self._sock is not None and not self._stop:
            while self._sock.poll(0):
                if self._sock.recv() == STOP:
                    self._stop = True
        import jax

        if jax.process_count() > 1:
            import numpy as np
            from jax.experimental import multihost_utils

            return bool(multihost_utils.broadcast_one_to_all(np.int32(self._stop)))
        return self._stop

    def capture_output(self) -> None:
        """Tee this process's stdout/stderr (C-level too) into log messages."""
        if self._sock is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            saved = os.dup(fd)
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            self._out_fds.append((fd, saved))
            pump = threading.Thread(target=self._pump, args=(r, saved), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def _pump(self, r: int, passthrough: int) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(r, 65536)
            except OSError:
                return
            if not chunk:
                break
            os.write(passthrough, chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self.log(line.decode("utf-8", "replace").rstrip("\r"))
        if buf:
            self.log(buf.decode("utf-8", "replace"))
        os.close(r)

    def close(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._out_fds:
            os.dup2(saved, fd)  # closes the pipe's write end: the pump drains and ends
        self._out_fds.clear()
        for pump in self._pumps:  # each ends at its pipe's EOF, after forwarding the last lines
            pump.join(timeout=5)
        self._pumps.clear()
        if self._sock is not None:
            self._send({"k": "bye"})
            self._sock.close()
            self._ctx.term()
            self._sock = None


class Receiver:
    """Actor side: binds a ROUTER, checks tokens, hands messages to `on_message`."""

    def __init__(self, host: str, token: str, on_message: Callable[[dict[str, Any]], None]):
        self.token = token
        self.on_message = on_message
        self.dropped = 0
        self.stop_wanted = False
        self._peers: set[bytes] = set()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 1_000_000)
        port = self._sock.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"
        self._closed = threading.Event()
        self._wake = self._ctx.socket(zmq.PAIR)
        self._wake.bind(f"inproc://wake-{id(self)}")
        self._wake_tx = self._ctx.socket(zmq.PAIR)
        self._wake_tx.connect(f"inproc://wake-{id(self)}")
        self._thread = threading.Thread(target=self._loop, name="metric-receiver", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self.stop_wanted = True
        self._wake_tx.send(b"stop")

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        while not self._closed.is_set():
            ready = dict(poller.poll(200))
            if self._wake in ready:
                self._wake.recv()
                if self.stop_wanted:
                    for peer in self._peers:
                        self._sock.send_multipart([peer, STOP])
            if self._sock not in ready:
                continue
            while True:
                try:
                    peer, data = self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except ValueError:
                    self.dropped += 1
                    continue
                msg = self._decode(data)
                if msg is None:
                    self.dropped += 1
                    continue
                self._peers.add(peer)
                if self.stop_wanted:
                    self._sock.send_multipart([peer, STOP])
                self.on_message(msg)

    def _decode(self, data: bytes) -> dict[str, Any] | None:
        try:
            msg = json.loads(data)
        except ValueError:
            return None
        if not isinstance(msg, dict) or not hmac.compare_digest(str(msg.pop("t", "")), self.token):
            return None
        return msg

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        for s in (self._sock, self._wake, self._wake_tx):
            s.close()
        self._ctx.term()


