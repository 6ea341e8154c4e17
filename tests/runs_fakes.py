"""Fakes for the Runs screen: a RunClient over fixed RunInfos whose runs replay the recorded stream.

FakeRunsClient follows `orpo_tui.job.client.RunClient`'s list_runs / attach / resume
contract without Ray or run folders: `list_runs` returns copies of the RunInfos it
was given (fixed timestamps, so snapshots hold no clock text), `attach` and
`resume` hand out `monitor_fakes.FakeRunHandle`s replaying
`tests/fixtures/recorded_stream.jsonl`, and every call is recorded.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from monitor_fakes import FakeRunHandle, load_records
from orpo_tui.job.records import FAILED, LIVE, RUNNING, STOPPED, SUCCEEDED, RunInfo
from orpo_tui.ui.app import OrpoApp, make_app
from orpo_tui.ui.runs_screen import RunsScreen

#: The fake "now": 2026-01-01 12:00:00 UTC.
FIXED_NOW = 1767268800.0
FAKE_RUNS_DIR = Path("/fake/runs")

LIVE_ID = "20260101-113000-tiny-cpu-a1b2"
STOPPED_ID = "20260101-100000-qwen3-14b-v4-64-c3d4"
FAILED_ID = "20251231-090000-tiny-cpu-e5f6"
SUCCEEDED_ID = "20251230-080000-tiny-beta-0789"


def fake_infos(runs_dir: Path = FAKE_RUNS_DIR) -> list[RunInfo]:
    """Four runs, newest first (as `RunClient.list_runs` orders them): live, stopped, failed, succeeded."""
    return [
        RunInfo(LIVE_ID, RUNNING, preset_name="tiny-cpu", model="/home/me/orpo-tui/assets/tiny-qwen3",
                accelerator="cpu x1", step=120, total_steps=400, last_loss=0.712345,
                started=FIXED_NOW - 1800, run_dir=str(runs_dir / LIVE_ID)),
        RunInfo(STOPPED_ID, STOPPED, preset_name="qwen3-14b-v4-64", model="Qwen/Qwen3-14B",
                accelerator="v4-64", step=1500, total_steps=20000, last_loss=1.23456,
                started=FIXED_NOW - 3 * 3600, ended=FIXED_NOW - 3600 + 125,
                checkpoint=str(runs_dir / STOPPED_ID / "checkpoints" / "run-1500"),
                run_dir=str(runs_dir / STOPPED_ID)),
        RunInfo(FAILED_ID, FAILED, preset_name="tiny-cpu", model="/home/me/orpo-tui/assets/tiny-qwen3",
                accelerator="cpu x1", step=14, total_steps=30, last_loss=float("nan"),
                started=FIXED_NOW - 27 * 3600, ended=FIXED_NOW - 27 * 3600 + 41,
                error="RuntimeError: loss became NaN at step 14", run_dir=str(runs_dir / FAILED_ID)),
        RunInfo(SUCCEEDED_ID, SUCCEEDED, preset_name="tiny-beta", model="/home/me/orpo-tui/assets/tiny-qwen3",
                accelerator="cpu x1", step=30, total_steps=30, last_loss=0.5012,
                started=FIXED_NOW - 52 * 3600, ended=FIXED_NOW - 52 * 3600 + 27,
                checkpoint=str(runs_dir / SUCCEEDED_ID / "checkpoints" / "run-30"),
                run_dir=str(runs_dir / SUCCEEDED_ID)),
    ]


class FakeListedRunHandle(FakeRunHandle):
    """monitor_fakes' replaying handle, plus `info()` as the real RunHandle has it."""

    def info(self) -> RunInfo:
        with self._lock:
            if self._stop_reported:
                state = STOPPED
            elif self.exhausted:
                state = self.final_state
            else:
                state = RUNNING
        return self._info(state)


class FakeRunsClient:
    """Lists fixed runs; attaching replays the recorded stream and ends in the run's own state.

    A live run's handle holds (keeps running) until stopped.
    """

    def __init__(self, infos: list[RunInfo] | None = None, runs_dir: Path = FAKE_RUNS_DIR, *,
                 resume_error: Exception | None = None) -> None:
        self.runs_dir = runs_dir
        self.infos = list(fake_infos(runs_dir) if infos is None else infos)
        self.resume_error = resume_error
        self.list_calls = 0
        self.attached: list[tuple[str, bool]] = []
        self.resumed: list[str] = []
        self.handles: list[FakeRunHandle] = []
        self._lock = threading.Lock()

    def _info(self, run_id: str) -> RunInfo:
        for info in self.infos:
            if info.run_id == run_id:
                return info
        raise KeyError(f"no run {run_id!r} in {self.runs_dir}")

    def list_runs(self) -> list[RunInfo]:
        with self._lock:
            self.list_calls += 1
            return [RunInfo(**i.to_json()) for i in self.infos]

    def _handle(self, info: RunInfo, *, live: bool) -> FakeListedRunHandle:
        records = load_records()
        if live:
            handle = FakeListedRunHandle(records, run_id=info.run_id, hold=True)
        elif info.state == FAILED:
            handle = FakeListedRunHandle(records, run_id=info.run_id, fail_after=len(records) // 2)
        else:
            handle = FakeListedRunHandle(records, run_id=info.run_id, final_state=info.state)
        handle.run_dir = Path(info.run_dir)
        self.handles.append(handle)
        return handle

    def attach(self, run_id: str, *, connect: bool = True) -> FakeListedRunHandle:
        info = self._info(run_id)
        with self._lock:
            self.attached.append((run_id, connect))
        return self._handle(info, live=info.state in LIVE)

    def resume(self, run_id: str) -> FakeListedRunHandle:
        info = self._info(run_id)
        if self.resume_error is not None:
            raise self.resume_error
        with self._lock:
            self.resumed.append(run_id)
        return self._handle(info, live=True)


# ---------------------------------------------------------------- pilot helpers

def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def runs_app(client, **options) -> OrpoApp:
    options.setdefault("open_runs", True)
    return make_app(client_factory=lambda: client, preset_dirs=[], environ={}, clock=lambda: FIXED_NOW,
                    **options)


def runs_screen(app: OrpoApp) -> RunsScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunsScreen))


async def wait_for(pilot, condition, what: str, timeout: float = 10.0) -> None:
    """Let workers and handlers run until `condition()` holds (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause()
    await pilot.pause()


async def listed(pilot) -> RunsScreen:
    """The Runs screen once its first listing is applied and drawn."""
    await wait_for(pilot, lambda: any(isinstance(s, RunsScreen) and s.listings for s in pilot.app.screen_stack),
                   "the first listing")
    screen = runs_screen(pilot.app)
    first = screen.highlighted_run()
    await shown(pilot, first.run_id if first else "No runs yet")
    return screen


async def shown(pilot, text: str) -> None:
    """Wait until `text` is on the screen as drawn (the compositor lags the widgets a frame)."""
    await wait_for(pilot, lambda: text in screen_text(pilot.app), f"{text!r} on screen")


__all__ = ["FAILED_ID", "FAKE_RUNS_DIR", "FIXED_NOW", "FakeListedRunHandle", "FakeRunsClient", "LIVE_ID", "STOPPED_ID",
           "SUCCEEDED_ID", "fake_infos", "listed", "runs_app", "runs_screen", "screen_text", "shown", "wait_for"]
