"""Test doubles for the UI: a fake engine client that replays a metric stream, and fixtures.

FakeRunClient / FakeRunHandle follow `orpo_tui.job.client`'s RunClient / RunHandle
contract without Ray: `launch` records the preset and returns a handle whose `poll`
hands out the records of a JSONL file (one `MetricRecord.to_json()` a line).
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path

import pytest

from orpo_tui.job.records import RUNNING, STOPPED, SUCCEEDED, MetricRecord, RunInfo, Update
from orpo_tui.preset import Preset

REPO = Path(__file__).resolve().parents[1]
REPO_PRESETS = REPO / "presets"
#: A tiny run's metric stream, one `MetricRecord.to_json()` a line (see fixtures/make_recorded_stream.py).
RECORDED_STREAM = REPO / "tests" / "fixtures" / "recorded_stream.jsonl"


def write_metric_stream(path: Path, records: list[MetricRecord]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records), encoding="utf-8")
    return path


def read_metric_stream(path: Path) -> list[MetricRecord]:
    return [MetricRecord.from_json(json.loads(line))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class FakeRunHandle:
    """A run that replays recorded metrics, `per_poll` records a poll, then succeeds."""

    def __init__(self, run_id: str, run_dir: Path, records: list[MetricRecord], *,
                 preset: Preset | None = None, per_poll: int = 5) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.records = records
        self.preset = preset
        self.per_poll = per_poll
        self.cursor = 0
        self.log_cursor = 0
        self.stop_requested = False
        self.polls = 0
        self._lock = threading.Lock()
        self._stopped_reported = False
        self.state = RUNNING

    def info(self) -> RunInfo:
        last = next((r for r in reversed(self.records[:self.cursor]) if r.mode == "train"), None)
        return RunInfo(self.run_id, self.state,
                       preset_name=self.preset.name if self.preset else "",
                       model=self.preset.model.id if self.preset else "",
                       accelerator=self.preset.accelerator.type if self.preset else "",
                       step=last.step if last else 0,
                       total_steps=max((r.step for r in self.records), default=0),
                       last_loss=last.get("loss") if last else math.nan,
                       run_dir=str(self.run_dir))

    def poll(self, timeout: float = 0.5) -> Update:
        with self._lock:
            self.polls += 1
            if self.state == RUNNING and self.stop_requested:
                self.state = STOPPED
            new = [] if self.state != RUNNING else self.records[self.cursor:self.cursor + self.per_poll]
            self.cursor += len(new)
            logs = [f"step {r.step} loss {r.get('loss'):.4f}" for r in new if r.mode == "train"]
            self.log_cursor += len(logs)
            events = []
            if self.state == RUNNING and self.cursor >= len(self.records):
                self.state = SUCCEEDED
                events.append({"event": "state", "state": SUCCEEDED})
            elif self.state == STOPPED and not self._stopped_reported:
                events.append({"event": "state", "state": STOPPED})
            self._stopped_reported = self.state == STOPPED
            return Update(self.info(), list(new), logs, events, self.cursor, self.log_cursor, len(events))

    def stop(self) -> None:
        with self._lock:
            self.stop_requested = True

    def release(self) -> None:
        """The real handle frees an ended run's actor; nothing to free here."""


class FakeRunClient:
    """Records every launch; each run replays the JSONL stream at `metrics_path`."""

    def __init__(self, metrics_path: Path = RECORDED_STREAM, runs_dir: Path | None = None, *,
                 fail_with: Exception | None = None, per_poll: int = 5) -> None:
        self.metrics_path = metrics_path
        self.runs_dir = runs_dir or Path("runs")
        self.fail_with = fail_with
        self.per_poll = per_poll
        self.launched: list[Preset] = []
        self.handles: dict[str, FakeRunHandle] = {}

    def launch(self, preset: Preset) -> FakeRunHandle:
        if self.fail_with is not None:
            raise self.fail_with
        self.launched.append(preset)
        run_id = f"fake-{len(self.launched):03d}"
        handle = FakeRunHandle(run_id, self.runs_dir / run_id, read_metric_stream(self.metrics_path), preset=preset,
                               per_poll=self.per_poll)
        self.handles[run_id] = handle
        return handle

    def attach(self, run_id: str) -> FakeRunHandle:
        if run_id not in self.handles:
            raise KeyError(f"no run {run_id!r}")
        return self.handles[run_id]

    def list_runs(self) -> list[RunInfo]:
        return [h.info() for h in self.handles.values()]


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def metrics_file(tmp_path: Path) -> Path:
    """A writable copy of the recorded metric stream."""
    return write_metric_stream(tmp_path / "metrics.jsonl", read_metric_stream(RECORDED_STREAM))


@pytest.fixture
def fake_client(metrics_file: Path, tmp_path: Path) -> FakeRunClient:
    return FakeRunClient(metrics_file, tmp_path / "runs")


@pytest.fixture
def preset_workspace(tmp_path: Path) -> dict[str, Path]:
    """Writable copies of the repo presets whose relative asset paths still resolve.

    Returns {"repo": presets folder, "user": an empty user preset folder}.
    """
    repo = tmp_path / "work" / "presets"
    shutil.copytree(REPO_PRESETS, repo)
    (tmp_path / "work" / "assets").symlink_to(REPO / "assets", target_is_directory=True)
    user = tmp_path / "user-presets"
    user.mkdir()
    return {"repo": repo, "user": user}
