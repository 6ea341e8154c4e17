"""Who may talk to a run: Ray's token auth on the head orpo-tui starts, and the metric socket's token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

import pytest

from orpo_tui.job.channel import Receiver, Reporter

PROBE = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).internal_kv_get(b"probe", None)
    print("CONNECTED")
except Exception as e:
    print("REFUSED", type(e).__name__, str(e).splitlines()[0][:120])
"""


def probe(address: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    out = subprocess.run([sys.executable, "-c", PROBE, address], capture_output=True, text=True,
                         env={**clean, **env}, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def test_ray_head_refuses_clients_without_the_token(ray_head, tmp_path):
    from orpo_tui.job import cluster

    token = cluster.token_path()
    address = cluster.local_head_address()  # the head may have been restarted by another test
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert probe(address, {}).startswith("REFUSED")
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    assert probe(address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)}).startswith("REFUSED")
    assert probe(address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}) == "CONNECTED"


def collect(token: str):
    got: list[dict] = []
    arrived = threading.Event()

    def on_message(msg):
        got.append(msg)
        arrived.set()

    return Receiver("127.0.0.1", token, on_message), got, arrived


def test_metric_socket_drops_messages_without_the_runs_token():
    import zmq

    receiver, got, arrived = collect("right-token")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    try:
        sock.connect(receiver.endpoint)
        # One connection keeps order: when the last (honest) message arrives, the rest were judged.
        sock.send(json.dumps({"t": "wrong-token", "k": "metric", "step": 1, "metrics": {"train/loss": 9.0}}).encode())
        sock.send(json.dumps({"k": "metric", "step": 2, "metrics": {}}).encode())
        sock.send(b"not json")
        sock.send(json.dumps({"t": "right-token", "k": "metric", "step": 3, "metrics": {"train/loss": 1.5}}).encode())
        assert arrived.wait(10)
        assert got == [{"k": "metric", "step": 3, "metrics": {"train/loss": 1.5}}]
        assert receiver.dropped == 3
    finally:
        sock.close(linger=0)
        receiver.close()


def test_reporter_messages_carry_the_token():
    receiver, got, arrived = collect("tok")
    try:
        reporter = Reporter(receiver.endpoint, "tok")
        reporter.metric(7, "train", {"train/loss": 2.0, "train/grad_norm/layer0": 1.0, "train/name": "x"})
        while len(got) < 2:
            arrived.clear()
            assert arrived.wait(10)
        assert [m["k"] for m in got] == ["hello", "metric"]
        # Per-parameter grad norms are left out of the stream; strings pass through.
        assert got[1]["metrics"] == {"train/loss": 2.0, "train/name": "x"}
        assert receiver.dropped == 0
        reporter.close()
    finally:
        receiver.close()


def test_stop_request_reaches_the_reporter():
    receiver, got, arrived = collect("tok")
    try:
        reporter = Reporter(receiver.endpoint, "tok")
        assert arrived.wait(10)  # hello: the receiver now knows this peer
        assert reporter.stop_requested() is False
        receiver.request_stop()
        import time

        deadline = time.monotonic() + 10
        while not reporter.stop_requested():
            assert time.monotonic() < deadline, "stop never arrived"
            reporter._sock.poll(100)
        reporter.close()
    finally:
        receiver.close()
