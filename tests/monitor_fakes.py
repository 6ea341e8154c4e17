"""Fakes for the Monitor's tests: a RunHandle that replays a recorded metric stream.

FakeRunHandle follows `orpo_tui.job.client.RunHandle` (poll / stop) without any
engine: it hands out the records of `tests/fixtures/recorded_stream.jsonl` over
a few polls, then reports a final state (succeeded, or failed with an error
event and traceback). Everything it reports derives from the file, so the file
can be swapped for a recording of a real run.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from textual.app import App

from orpo_tui.job.records import FAILED, RUNNING, STOPPED, SUCCEEDED, MetricRecord, RunInfo, Update
from orpo_tui.ui.monitor import MonitorScreen

FIXTURE = Path(__file__).parent / "fixtures" / "recorded_stream.jsonl"

FAKE_ERROR = "RuntimeError: loss became NaN at step 14"
FAKE_TRACEBACK = """Traceback (most recent call last):
  File "orpo_tui/job/train.py", line 212, in run_training
    trainer.train()
  File "easydel/trainers/base_trainer.py", line 1480, in train
    raise RuntimeError("loss became NaN at step 14")
RuntimeError: loss became NaN at step 14"""


def load_records(path: Path = FIXTURE) -> list[MetricRecord]:
    return [MetricRecord.from_json(json.loads(line))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def log_line(record: MetricRecord) -> str:
    """The trainer log line the fake emits for a train record (derived from it)."""
    return f"step {record.step} loss {record.get('loss'):.4f}"


class FakeRunHandle:
    """A fake RunHandle replaying `records` in `chunks` polls, then ending in `final_state`.

    With `hold=True` it never ends by itself: after the records it keeps reporting
    "running" (blocking each poll up to its timeout) until `stop()` is called.
    `fail_after` replays only that many records before failing.
    """

    def __init__(self, records: list[MetricRecord] | None = None, *, run_id: str = "fake-0001",
                 chunks: int = 3, final_state: str = SUCCEEDED, hold: bool = False,
                 fail_after: int | None = None):
        self.records = list(load_records() if records is None else records)
        all_train_steps = [r.step for r in self.records if r.mode == "train"]
        if fail_after is not None:
            self.records = self.records[:fail_after]
            final_state = FAILED
        self.run_id = run_id
        self.run_dir = Path("/nonexistent/runs") / run_id
        self.final_state = final_state
        self.hold = hold
        size = max(1, -(-len(self.records) // max(1, chunks)))
        self._chunks = [self.records[i:i + size] for i in range(0, len(self.records), size)]
        self._next = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_asked = False
        self._stop_reported = False
        self.stop_calls = 0
        self.polls = 0
        self.exhausted = False
        self.total_steps = max(all_train_steps, default=0)
        self.started = self.records[0].time if self.records else 0.0
        self.last_step = 0
        self._train = [r for r in self.records if r.mode == "train"]

    def _info(self, state: str, error: str = "") -> RunInfo:
        done = state in (SUCCEEDED, FAILED, STOPPED)
        last = self._train_upto_step()
        return RunInfo(self.run_id, state, preset_name="tiny-cpu", model="tiny-qwen3",
                       accelerator="cpu-1", step=self.last_step, total_steps=self.total_steps,
                       last_loss=last, started=self.started,
                       ended=(self.records[-1].time if done and self.records else 0.0),
                       error=error, checkpoint=("runs/fake/checkpoint-final" if state == STOPPED else ""),
                       run_dir=str(self.run_dir))

    def _train_upto_step(self) -> float:
        for r in reversed(self._train):
            if r.step <= self.last_step:
                return r.get("loss")
        return float("nan")

    def poll(self, timeout: float = 0.5) -> Update:
        with self._lock:
            self.polls += 1
            if self._stop_asked:
                if not self._stop_reported:
                    self._stop_reported = True
                    self.exhausted = True
                    return Update(self._info(STOPPED), events=[
                        {"kind": "state", "message": "stopping: writing a checkpoint"},
                        {"kind": "state", "message": "stopped"}])
            if self._next < len(self._chunks):
                chunk = self._chunks[self._next]
                self._next += 1
                events = [{"kind": "state", "message": "running"}] if self._next == 1 else []
                for r in chunk:
                    if r.mode == "train":
                        self.last_step = max(self.last_step, r.step)
                logs = [log_line(r) for r in chunk if r.mode == "train"]
                return Update(self._info(RUNNING), metrics=chunk, logs=logs, events=events)
            if not self.hold and not self.exhausted:
                self.exhausted = True
                if self.final_state == FAILED:
                    return Update(self._info(FAILED, FAKE_ERROR), logs=["trainer crashed"],
                                  events=[{"kind": "error", "message": FAKE_ERROR,
                                           "traceback": FAKE_TRACEBACK}])
                return Update(self._info(self.final_state),
                              events=[{"kind": "state", "message": self.final_state}])
            state = STOPPED if self._stop_reported else (self.final_state if self.exhausted else RUNNING)
        # Blocks like the real client: until something happens or the timeout.
        self._wake.wait(timeout)
        self._wake.clear()
        return Update(self._info(state))

    def stop(self) -> None:
        with self._lock:
            self.stop_calls += 1
            self._stop_asked = True
        self._wake.set()


class MonitorHost(App[None]):
    """A bare app that shows one MonitorScreen (what OrpoApp pushes after Launch)."""

    def __init__(self, handle, preset=None):
        super().__init__()
        self.handle = handle
        self.preset = preset
        self.monitor: MonitorScreen | None = None

    def on_mount(self) -> None:
        self.monitor = MonitorScreen(self.handle, self.preset)
        self.push_screen(self.monitor)


async def wait_drained(pilot, limit: int = 400) -> MonitorScreen:
    """Let the worker and handlers run until the monitor has drawn the run's end."""
    app = pilot.app
    for _ in range(limit):
        screen = app.monitor
        if screen is not None and screen.drained:
            break
        await pilot.pause()
    else:
        raise AssertionError("the monitor never drained its run")
    await pilot.pause()
    return app.monitor


__all__ = ["FAKE_ERROR", "FAKE_TRACEBACK", "FIXTURE", "FakeRunHandle", "MonitorHost",
           "load_records", "log_line", "wait_drained"]
