"""The run directory: the source of truth for a run, readable with no Ray at all.

    runs/<run-id>/
        preset.toml      the resolved preset (secret *names* only)
        run.json         RunInfo: state, step, total, last loss, error, checkpoint
        metrics.jsonl    one MetricRecord per logged step, append-only, flushed
        events.jsonl     state changes, phases, errors with traceback
        trainer.log      the trainer's stdout/stderr
        checkpoints/     EasyDeL checkpoints (when save_directory is relative)
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orpo_tui.job.records import FAILED, LIVE, MetricRecord, RunInfo

RUNS_ENV = "ORPO_TUI_RUNS_DIR"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV, "runs")).expanduser().resolve()


def new_run_id(name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


class RunStore:
    """Writes one run's files; used by the RunActor (one writer per run)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
        self._events = open(self.dir / "events.jsonl", "a", encoding="utf-8")
        self._log = open(self.dir / "trainer.log", "a", encoding="utf-8")

    def write_preset(self, toml_text: str) -> None:
        (self.dir / "preset.toml").write_text(toml_text, encoding="utf-8")

    def append_metric(self, record: MetricRecord) -> None:
        self._metrics.write(json.dumps(record.to_json()) + "\n")
        self._metrics.flush()

    def append_event(self, event: dict[str, Any]) -> None:
        self._events.write(json.dumps(event) + "\n")
        self._events.flush()

    def append_log(self, line: str) -> None:
        self._log.write(line + "\n")
        self._log.flush()

    def write_info(self, info: RunInfo) -> None:
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(info.to_json(), indent=1), encoding="utf-8")
        tmp.replace(self.dir / "run.json")

    def close(self) -> None:
        for f in (self._metrics, self._events, self._log):
            f.close()


def read_jsonl(path: Path, start: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file from line `start` (at most `limit`); a torn last line is skipped."""
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    stop = None if limit is None else start + limit
    with fh:
        for i, line in enumerate(fh):
            if stop is not None and i >= stop:
                break
            if i < start or not line.endswith("\n"):
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue


def read_metrics(run_dir: Path, start: int = 0, limit: int | None = None) -> list[MetricRecord]:
    return [MetricRecord.from_json(d) for d in read_jsonl(Path(run_dir) / "metrics.jsonl", start, limit)]


def read_info(run_dir: Path) -> RunInfo | None:
    try:
        return RunInfo.from_json(json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def list_run_dirs(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    return sorted((p for p in runs_dir.iterdir() if (p / "run.json").is_file()), reverse=True)


def checkpoint_step(path: str) -> int | None:
    """The step of an EasyDeL checkpoint folder named `run-<step>`."""
    name = Path(path.rstrip("/")).name
    return int(name[4:]) if name.startswith("run-") and name[4:].isdigit() else None


def latest_checkpoint(save_directory: str) -> tuple[str, int] | None:
    """The newest local `run-<step>` checkpoint under a save directory (None for gs:// or none)."""
    root = Path(save_directory)
    if "://" in save_directory or not root.is_dir():
        return None
    found = [(checkpoint_step(str(p)), str(p)) for p in root.rglob("run-*") if p.is_dir()]
    found = [(s, p) for s, p in found if s is not None]
    if not found:
        return None
    step, path = max(found)
    return path, step


def truncate_metrics(run_dir: Path, last_step: int) -> int:
    """Keep train records up to `last_step` (a resume point); set the rest aside, never delete.

    Returns how many records were set aside (into metrics.replaced.jsonl).
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    keep, aside = [], []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            step = int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
        (keep if step <= last_step else aside).append(line)
    if aside:
        with open(Path(run_dir) / "metrics.replaced.jsonl", "a", encoding="utf-8") as fh:
            fh.writelines(aside)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(keep), encoding="utf-8")
        tmp.replace(path)
    return len(aside)


def orphaned(info: RunInfo) -> RunInfo:
    """A live-looking run whose actor is gone ended without saying so: mark it failed."""
    if info.state in LIVE:
        info.state = FAILED
        info.error = info.error or "the run's actor is gone (Ray cluster stopped?) before it ended"
    return info
