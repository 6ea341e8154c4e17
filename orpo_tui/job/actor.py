"""RunActor: the named, detached Ray actor that owns one run.

It outlives the console that launched it: it launches the training through
eformer's executor, receives the trainer's stream over the token-checked
channel, keeps a bounded in-memory history, and writes the run directory.
Clients long-poll it with cursors, so any number can attach and none misses
or repeats a step.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from orpo_tui.job import store as run_store
from orpo_tui.job.channel import Receiver
from orpo_tui.job.health import NAN, HealthMonitor
from orpo_tui.job.records import (FAILED, PENDING, RUNNING, STARTING, STOPPED, STOPPING,
                                  SUCCEEDED, TERMINAL, TRANSITIONS, MetricRecord, RunInfo, Update)

NAMESPACE = "orpo-tui"
MEMORY_STEPS = 200_000  # older steps are served from metrics.jsonl
MEMORY_LOG_LINES = 5_000
POLL_PAGE = 20_000  # records per poll: attaching to a 1M-step run pages instead of one huge reply
LINGER_ENV = "ORPO_TUI_ACTOR_LINGER_S"


def actor_name(run_id: str) -> str:
    return f"run-{run_id}"


class RunActor:
    """One run's owner. Methods are called through Ray (threaded actor)."""

    def __init__(self, run_id: str, run_dir: str, spec: dict[str, Any], preset_toml: str,
                 secret_values: dict[str, str], env: dict[str, str], host: str | None):
        import ray

        self.run_dir = Path(run_dir)
        self.spec = spec
        self._secrets = secret_values
        self._env = env
        a = spec["accelerator"]
        self.info = RunInfo(run_id=run_id, state=PENDING, preset_name=spec["preset_name"],
                            model=spec["model"]["pretrained_model_name_or_path"],
                            accelerator=a["type"] if a["kind"] != "cpu" else f"cpu x{a['count']}",
                            started=time.time(), run_dir=str(self.run_dir))
        self.store = run_store.RunStore(self.run_dir)
        self.store.write_preset(preset_toml)
        self._cond = threading.Condition()
        self._metrics: list[MetricRecord] = []
        # A resumed run keeps its folder: cursors continue after the steps already on disk.
        self._metric_base = sum(1 for _ in run_store.read_jsonl(self.run_dir / "metrics.jsonl"))
        self._logs: list[str] = []
        self._log_base = 0
        self._events: list[dict[str, Any]] = []
        self._bye = threading.Event()
        self._info_written = 0.0
        self._step_times: list[float] = []
        self._first_time = 0.0
        self.health = HealthMonitor()
        self._stop_on_nan = bool(spec.get("stop_on_nan", False))
        self._peak_tflops = spec.get("peak_tflops")
        with self._cond:
            self._set_state(PENDING)
        self.receiver = Receiver(host or ray.util.get_node_ip_address(), secrets.token_hex(16),
                                 self._on_message)

    # ------------------------------------------------------------ control
    def start(self) -> RunInfo:
        with self._cond:
            if self.info.state == PENDING:
                self._set_state(STARTING)
                threading.Thread(target=self._launch, name="launcher", daemon=True).start()
            return self.info

    def stop(self, reason: str = "stop requested by a client") -> RunInfo:
        """Ask the trainer to save a checkpoint and return; the event log records why."""
        with self._cond:
            if self.info.state in (PENDING, STARTING, RUNNING):
                self._add_event({"kind": "stop", "reason": reason, "step": self.info.step, "time": time.time()})
                self._set_state(STOPPING)
                self.receiver.request_stop()
            return self.info

    def get_info(self) -> RunInfo:
        return self.info

    def endpoint(self) -> str:
        return self.receiver.endpoint

    def poll(self, metric_cursor: int, log_cursor: int, event_cursor: int,
             timeout: float = 0.5) -> Update:
        """Everything after the cursors; waits up to `timeout` for something new."""
        with self._cond:
            def has_news() -> bool:
                return (metric_cursor < self._metric_base + len(self._metrics)
                        or log_cursor < self._log_base + len(self._logs)
                        or event_cursor < len(self._events))

            if not has_news() and self.info.state not in TERMINAL:
                self._cond.wait_for(lambda: has_news() or self.info.state in TERMINAL, timeout)
            base = self._metric_base
            older_from = metric_cursor if metric_cursor < base else None
            if older_from is not None:  # a page from metrics.jsonl, read below
                metrics, mend = [], min(base, metric_cursor + POLL_PAGE)
            else:
                metrics = self._metrics[metric_cursor - base: metric_cursor - base + POLL_PAGE]
                mend = metric_cursor + len(metrics)
            logs = self._logs[max(log_cursor - self._log_base, 0):]
            events = self._events[event_cursor:]
            update = Update(info=RunInfo(**self.info.to_json()), metrics=list(metrics), logs=list(logs),
                            events=list(events), metric_cursor=mend,
                            log_cursor=self._log_base + len(self._logs), event_cursor=len(self._events),
                            more=mend < base + len(self._metrics))
        if older_from is not None:  # outside the lock: file reads can be long
            update.metrics = run_store.read_metrics(self.run_dir, older_from, mend - older_from)
        return update

    # ------------------------------------------------------------ launch
    def _launch(self) -> None:
        try:
            import ray
            from eformer.executor.ray import JobSucceeded, RayExecutor

            from orpo_tui import accelerators
            from orpo_tui.job.train import run_training

            a = self.spec["accelerator"]
            config = accelerators.eformer_config(a["kind"], a["type"], a["count"], self.spec["runtime_env"])
            status = RayExecutor.execute(
                # No silent re-run: a retried task would train again from step 0 into the same stream.
                ray.remote(max_retries=0)(run_training), config, spec=self.spec,
                channel={"endpoint": self.receiver.endpoint, "token": self.receiver.token},
                secrets=self._secrets, env=self._env)
            self._secrets = {}
            self._bye.wait(timeout=10)  # the last messages may trail the process's exit
            if isinstance(status, JobSucceeded):
                result = status.result[0] if isinstance(status.result, list) else status.result
                self._finish(STOPPED if result.get("outcome") == "stopped" else SUCCEEDED,
                             checkpoint=str(result.get("checkpoint", "")))
            else:
                err = getattr(status, "error", None)
                self._finish(FAILED, error=self.info.error or _one_line(err) or type(status).__name__,
                             tb="".join(traceback.format_exception(err)) if isinstance(err, BaseException) else "")
        except BaseException as e:  # the actor must record every failure, never die silently
            self._bye.wait(timeout=2)
            self._finish(FAILED, error=self.info.error or _one_line(e), tb=traceback.format_exc())

    def _finish(self, state: str, *, checkpoint: str = "", error: str = "", tb: str = "") -> None:
        with self._cond:
            if state == FAILED:
                self.info.error = error
                if not any(e.get("kind") == "error" for e in self._events):
                    self._add_event({"kind": "error", "time": time.time(), "message": error, "traceback": tb})
                elif tb:
                    self._add_event({"kind": "launcher_error", "time": time.time(), "message": error,
                                     "traceback": tb})
            if checkpoint:
                self.info.checkpoint = checkpoint
            self.info.ended = time.time()
            self._set_state(state)
        self.receiver.close()
        self.store.close()
        linger = float(os.environ.get(LINGER_ENV, "900"))
        threading.Timer(linger, os._exit, args=(0,)).start()

    # ------------------------------------------------------------ stream
    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("k")
        with self._cond:
            if kind == "metric":
                self._add_metric(msg)
            elif kind == "log":
                line = str(msg.get("line", ""))
                self.store.append_log(line)
                self._logs.append(line)
                if len(self._logs) > MEMORY_LOG_LINES:
                    drop = len(self._logs) - MEMORY_LOG_LINES
                    del self._logs[:drop]
                    self._log_base += drop
            elif kind == "event":
                msg.pop("k", None)
                if msg.get("kind") == "configured":
                    self.info.total_steps = int(msg.get("total_steps") or 0)
                elif msg.get("kind") == "error":
                    self.info.error = str(msg.get("message", ""))
                self._add_event(msg)
            elif kind == "bye":
                self._bye.set()
            self._cond.notify_all()

    def _add_metric(self, msg: dict[str, Any]) -> None:
        rec = MetricRecord(int(msg["step"]), str(msg.get("mode", "train")), float(msg.get("time", time.time())),
                           dict(msg.get("metrics", {})), dict(msg.get("derived", {})))
        if rec.mode == "train":
            if not self._first_time:
                self._first_time = rec.time
            self._step_times.append(rec.time)
            del self._step_times[:-21]
            rec.derived["elapsed_s"] = rec.time - self.info.started
            total = self.info.total_steps
            if total and len(self._step_times) > 1:
                per_step = (self._step_times[-1] - self._step_times[0]) / (len(self._step_times) - 1)
                rec.derived["eta_s"] = max(total - rec.step, 0) * per_step
            mfu = model_flops_utilization(rec, self._peak_tflops)
            if mfu is not None:
                rec.derived["mfu"] = mfu
            self.info.step = rec.step
            loss = rec.metrics.get("train/loss")
            if isinstance(loss, float):
                self.info.last_loss = loss
            if self.info.state == STARTING:
                self._set_state(RUNNING)
            elif rec.time - self._info_written > 2.0:  # `orpo-tui runs` reads this with no Ray
                self.store.write_info(self.info)
                self._info_written = rec.time
        self.store.append_metric(rec)
        self._metrics.append(rec)
        if len(self._metrics) > MEMORY_STEPS:
            drop = len(self._metrics) - MEMORY_STEPS
            del self._metrics[:drop]
            self._metric_base += drop
        for alert in self.health.observe(rec):
            self._add_event(alert.to_event())
            if alert.name == NAN and self._stop_on_nan and self.info.state in (STARTING, RUNNING):
                # The trainer saves the checkpoint at its next step start; the run ends `stopped`.
                self.info.error = f"stopped on NaN/Inf (orpo.stop_on_nan): {alert.message}"
                self.stop(reason=f"orpo.stop_on_nan: {alert.message}")

    def _add_event(self, event: dict[str, Any]) -> None:
        self.store.append_event(event)
        self._events.append(event)

    def _set_state(self, state: str) -> None:
        old = self.info.state
        if state != old and state not in TRANSITIONS.get(old, ()):
            return
        self.info.state = state
        self._add_event({"kind": "state", "state": state, "time": time.time()})
        self.store.write_info(self.info)
        self._cond.notify_all()


def model_flops_utilization(rec: MetricRecord, peak_tflops: float | None) -> float | None:
    """Achieved model TFLOP/s of a train step over the peak of the whole slice; None if unknown.

    EasyDeL's `train/tflops` is FLOPs per token (forward + backward, x3) x max_length x the
    global batch, over the step's execution time: all chips together, but one sequence per
    pair, while ORPO runs chosen and rejected (2 sequences a pair). So the achieved figure
    uses the tokens the step really fed the chips (`derived.padded_tokens`, padding
    included) when they are known, and EasyDeL's figure otherwise.
    """
    if not peak_tflops or peak_tflops <= 0:
        return None
    per_token = rec.metrics.get("train-mlperf/flops_per_token")
    seconds = rec.metrics.get("train-mlperf/execution_time")
    tokens = rec.derived.get("padded_tokens")
    if all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in (per_token, seconds, tokens)):
        tflops = per_token * tokens / seconds / 1e12
    else:
        tflops = rec.metrics.get("train/tflops")
        if not isinstance(tflops, (int, float)) or not math.isfinite(tflops) or tflops < 0:
            return None
    return float(tflops) / float(peak_tflops)


def _one_line(err: Any) -> str:
    if err is None:
        return ""
    text = f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else str(err)
    return text.strip().splitlines()[0][:500] if text.strip() else type(err).__name__
