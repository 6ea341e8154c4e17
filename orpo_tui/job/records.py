"""Plain data that crosses the engine's seams: metric records, run states, updates.

These are what the UI, headless mode and the run files all render from, so
what a user sees live and what is on disk are the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

PENDING, STARTING, RUNNING, STOPPING = "pending", "starting", "running", "stopping"
SUCCEEDED, FAILED, STOPPED = "succeeded", "failed", "stopped"
TERMINAL = frozenset({SUCCEEDED, FAILED, STOPPED})
LIVE = frozenset({PENDING, STARTING, RUNNING, STOPPING})
TRANSITIONS = {
    PENDING: {STARTING, FAILED, STOPPED},
    STARTING: {RUNNING, STOPPING, FAILED, STOPPED, SUCCEEDED},
    RUNNING: {STOPPING, SUCCEEDED, FAILED, STOPPED},
    STOPPING: {STOPPED, FAILED, SUCCEEDED},
}


@dataclass
class MetricRecord:
    """One `log_metrics` call of the trainer.

    `metrics` holds exactly what EasyDeL passed (its own names, e.g.
    `train/loss`, `train/logps/chosen`); `derived` holds what orpo-tui
    computes beside it (real tokens/s, ETA, MFU).
    """

    step: int
    mode: str  # "train" or "eval"
    time: float
    metrics: dict[str, float]
    derived: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # Not asdict(): it deep-copies every value, ~0.3 ms a record (benchmarks/bench_ingestion.py).
        return {"step": self.step, "mode": self.mode, "time": self.time, "metrics": self.metrics,
                "derived": self.derived}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricRecord:
        return cls(int(data["step"]), data.get("mode", "train"), float(data.get("time", 0.0)),
                   dict(data.get("metrics", {})), dict(data.get("derived", {})))

    def get(self, name: str, default: float = math.nan) -> float:
        """A metric by short name: `loss` finds `train/loss` or `eval/loss`."""
        # EasyDeL's ORPO names eval metrics eval/eval_<name> (eval/loss aside).
        for key in (name, f"{self.mode}/{name}", f"{self.mode}/{self.mode}_{name}", f"{self.mode}-mlperf/{name}"):
            if key in self.metrics:
                v = self.metrics[key]
                return float(v) if isinstance(v, (int, float)) else default
        v = self.derived.get(name, default)
        return float(v) if isinstance(v, (int, float)) else default


@dataclass
class RunInfo:
    """What the run list shows about one run (from the actor or `run.json`)."""

    run_id: str
    state: str
    preset_name: str = ""
    model: str = ""
    accelerator: str = ""
    step: int = 0
    total_steps: int = 0
    last_loss: float = math.nan
    started: float = 0.0
    ended: float = 0.0
    error: str = ""
    checkpoint: str = ""
    run_dir: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class Update:
    """What one poll of a run returns: everything new since the caller's cursors."""

    info: RunInfo
    metrics: list[MetricRecord] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    metric_cursor: int = 0
    log_cursor: int = 0
    event_cursor: int = 0
    #: More records are waiting past this page; poll again at once.
    more: bool = False

    @property
    def state(self) -> str:
        return self.info.state

    @property
    def done(self) -> bool:
        """The run has ended and this client has everything."""
        return self.info.state in TERMINAL and not self.more
