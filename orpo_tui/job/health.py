"""Health checks on a run's metric stream: NaN, log-probs at 0, gradient spikes, rising loss, chance accuracy.

Pure Python (no textual, jax or numpy), so the RunActor runs it on every
record it receives and the tests feed it synthetic ones. Each detector tracks
an episode: it fires one `Alert` when its condition starts to hold and stays
quiet until the condition has cleared, so a run that stays NaN for a thousand
steps says so once.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from orpo_tui.job.records import MetricRecord

#: The parts of the ORPO loss a NaN/Inf check looks at (EasyDeL's names, train mode).
LOSS_PARTS = ("train/loss", "train/nll_loss", "train/log_odds_ratio", "train/log_odds_chosen",
              "train/logps/chosen", "train/logps/rejected")
GRAD_NORMS = ("train/train/max_grad_norm", "train/train/mean_grad_norm")

NAN, LOGPS_NEAR_ZERO, GRAD_SPIKE, LOSS_RISING, ACCURACY_AT_CHANCE = (
    "nan", "logps_near_zero", "grad_spike", "loss_rising", "accuracy_at_chance")
ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of the detectors; the defaults are the ones the console uses."""

    #: Mean per-token log-prob above this: log(1 - exp(x)) in the odds ratio loses precision.
    logps_ceiling: float = -1e-3
    #: A gradient norm above `grad_spike_factor` x the median of the previous `grad_window` norms.
    grad_spike_factor: float = 10.0
    grad_window: int = 50
    grad_min_history: int = 10
    #: Loss EMA (this span) that rose at each of the last `loss_rise_steps` steps, by at least
    #: `loss_rise_min` (relative) over them.
    loss_ema_span: int = 10
    loss_rise_steps: int = 20
    loss_rise_min: float = 0.01
    #: Mean reward accuracy over the last `chance_window` steps within 0.5 +- `chance_band`,
    #: checked from step `chance_after` on.
    chance_window: int = 50
    chance_band: float = 0.05
    chance_after: int = 100


@dataclass(frozen=True)
class Alert:
    """One health finding, as it goes into the event log."""

    name: str
    message: str
    step: int
    time: float
    severity: str = WARNING

    def to_event(self) -> dict[str, Any]:
        return {"kind": "alert", "alert": self.name, "message": self.message, "step": self.step,
                "time": self.time, "severity": self.severity}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _value(rec: MetricRecord, key: str) -> float | None:
    v = rec.metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


class _Detector:
    """One condition with episode bookkeeping: `condition` returns a message while it holds."""

    name = ""
    severity = WARNING

    def __init__(self, config: HealthConfig):
        self.config = config
        self.active = False

    def condition(self, rec: MetricRecord) -> str | None:
        raise NotImplementedError

    def observe(self, rec: MetricRecord) -> Alert | None:
        message = self.condition(rec)
        if message is None:
            self.active = False
            return None
        if self.active:
            return None
        self.active = True
        return Alert(self.name, message, rec.step, rec.time, self.severity)


class NonFinite(_Detector):
    """NaN or Inf in any part of the loss."""

    name, severity = NAN, ERROR

    def condition(self, rec: MetricRecord) -> str | None:
        bad = [(k, v) for k in LOSS_PARTS if (v := _value(rec, k)) is not None and not math.isfinite(v)]
        if not bad:
            return None
        parts = ", ".join(f"{k.removeprefix('train/')} = {v}" for k, v in bad)
        return f"non-finite loss at step {rec.step}: {parts}"


class LogpsNearZero(_Detector):
    """Mean chosen or rejected log-prob per token close to 0 (probability close to 1)."""

    name = LOGPS_NEAR_ZERO

    def condition(self, rec: MetricRecord) -> str | None:
        ceiling = self.config.logps_ceiling
        high = [(side, v) for side in ("chosen", "rejected")
                if (v := _value(rec, f"train/logps/{side}")) is not None and math.isfinite(v) and v > ceiling]
        if not high:
            return None
        parts = ", ".join(f"{side} {v:.2e}" for side, v in high)
        return (f"mean log-prob per token near 0 ({parts} > {ceiling:g}): log(1 - exp(logp)) in the "
                f"odds ratio loses precision and can turn NaN")


class GradSpike(_Detector):
    """A gradient norm far above its running median (or not finite)."""

    name = GRAD_SPIKE

    def __init__(self, config: HealthConfig):
        super().__init__(config)
        self.history: dict[str, deque[float]] = {k: deque(maxlen=config.grad_window) for k in GRAD_NORMS}

    def condition(self, rec: MetricRecord) -> str | None:
        c = self.config
        found = None
        for key in GRAD_NORMS:
            v = _value(rec, key)
            if v is None:
                continue
            past = self.history[key]
            label = key.rsplit("/", 1)[-1]
            if not math.isfinite(v):
                found = found or f"{label} is {v} at step {rec.step}"
                continue
            if len(past) >= c.grad_min_history:
                median = statistics.median(past)
                if median > 0 and v > c.grad_spike_factor * median:
                    found = found or (f"{label} {v:.4g} at step {rec.step} is {v / median:.0f}x its median "
                                      f"{median:.4g} over the last {len(past)} steps")
            past.append(v)
        return found


class LossRising(_Detector):
    """The loss EMA went up at every one of the last N steps, by a real amount."""

    name = LOSS_RISING

    def __init__(self, config: HealthConfig):
        super().__init__(config)
        self.alpha = 2.0 / (config.loss_ema_span + 1)
        self.ema: float | None = None
        self.emas: deque[float] = deque(maxlen=config.loss_rise_steps + 1)

    def condition(self, rec: MetricRecord) -> str | None:
        c = self.config
        loss = _value(rec, "train/loss")
        if loss is None or not math.isfinite(loss):
            return "holding" if self.active else None  # a NaN step neither ends nor starts a rise
        self.ema = loss if self.ema is None else self.ema + self.alpha * (loss - self.ema)
        self.emas.append(self.ema)
        if len(self.emas) <= c.loss_rise_steps:
            return None
        values = list(self.emas)
        rising = all(b > a for a, b in zip(values, values[1:]))
        start, end = values[0], values[-1]
        if not rising or end - start < c.loss_rise_min * max(abs(start), 1e-12):
            return None
        return (f"loss rising: its EMA went up at each of the last {c.loss_rise_steps} steps, "
                f"{start:.4g} -> {end:.4g} (step {rec.step})")


class AccuracyAtChance(_Detector):
    """Reward accuracy still near 0.5 long after the start: preferences are not being learnt."""

    name = ACCURACY_AT_CHANCE

    def __init__(self, config: HealthConfig):
        super().__init__(config)
        self.window: deque[float] = deque(maxlen=config.chance_window)

    def condition(self, rec: MetricRecord) -> str | None:
        c = self.config
        acc = _value(rec, "train/rewards/accuracies")
        if acc is None or not math.isfinite(acc):
            return "holding" if self.active else None
        self.window.append(acc)
        if rec.step < c.chance_after or len(self.window) < c.chance_window:
            return None
        mean = sum(self.window) / len(self.window)
        if abs(mean - 0.5) > c.chance_band:
            return None
        return (f"reward accuracy at chance: mean {mean:.3f} over the last {len(self.window)} steps "
                f"(step {rec.step}); the model is not separating chosen from rejected")


class HealthMonitor:
    """Feed it every MetricRecord; it returns the alerts that start at that record."""

    def __init__(self, config: HealthConfig | None = None):
        self.config = config or HealthConfig()
        self.detectors: list[_Detector] = [cls(self.config) for cls in
                                           (NonFinite, LogpsNearZero, GradSpike, LossRising, AccuracyAtChance)]
        self.alerts: list[Alert] = []

    def observe(self, rec: MetricRecord) -> list[Alert]:
        """New alerts for this record (eval records are not checked: they come from train weights)."""
        if rec.mode != "train":
            return []
        new = [a for d in self.detectors if (a := d.observe(rec)) is not None]
        self.alerts += new
        return new

    def active(self) -> list[str]:
        """Names of the conditions that hold right now."""
        return [d.name for d in self.detectors if d.active]
