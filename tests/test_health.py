"""Health alerts on synthetic metric streams, MFU, and how the actor and headless mode use them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from orpo_tui import cli
from orpo_tui import preset as P
from orpo_tui.job import actor as actor_mod
from orpo_tui.job import health, resolve
from orpo_tui.job.health import HealthConfig, HealthMonitor
from orpo_tui.job.records import RUNNING, STARTING, STOPPING, MetricRecord

REPO = Path(__file__).resolve().parents[1]

HEALTHY = {"train/loss": 2.0, "train/nll_loss": 1.9, "train/log_odds_ratio": -0.6, "train/log_odds_chosen": 0.2,
           "train/logps/chosen": -1.5, "train/logps/rejected": -1.7, "train/rewards/accuracies": 0.75,
           "train/train/max_grad_norm": 1.0, "train/train/mean_grad_norm": 0.1}


def rec(step: int, mode: str = "train", **values: float) -> MetricRecord:
    """A train record with healthy values, overridden by `key=value` (slashes spelled __)."""
    metrics = dict(HEALTHY) if mode == "train" else {}
    metrics.update({k.replace("__", "/"): v for k, v in values.items()})
    return MetricRecord(step, mode, 1000.0 + step, metrics)


def run(monitor: HealthMonitor, records) -> list[health.Alert]:
    out = []
    for r in records:
        out += monitor.observe(r)
    return out


def names(alerts) -> list[tuple[str, int]]:
    return [(a.name, a.step) for a in alerts]


# ---------------------------------------------------------------- NaN / Inf

def test_a_healthy_run_raises_nothing():
    m = HealthMonitor()
    records = [rec(s, train__loss=2.0 - s * 1e-3, train__rewards__accuracies=0.5 + min(s, 400) / 1000)
               for s in range(1, 400)]
    assert run(m, records) == []
    assert m.active() == []


@pytest.mark.parametrize("key", health.LOSS_PARTS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_any_non_finite_loss_part_alerts(key, bad):
    alerts = run(HealthMonitor(), [rec(1), rec(2, **{key.replace("/", "__"): bad})])
    assert names(alerts) == [("nan", 2)]
    a = alerts[0]
    assert a.severity == "error" and key.removeprefix("train/") in a.message and str(bad) in a.message


def test_nan_fires_once_per_episode_and_again_after_recovery():
    stream = [rec(1), rec(2, train__loss=math.nan), rec(3, train__loss=math.nan),
              rec(4, train__nll_loss=math.inf), rec(5), rec(6), rec(7, train__loss=math.nan)]
    alerts = run(HealthMonitor(), stream)
    assert names(alerts) == [("nan", 2), ("nan", 7)]


def test_eval_records_are_not_checked():
    assert HealthMonitor().observe(rec(5, "eval", **{"eval/loss": math.nan})) == []


def test_alert_event_shape():
    a = run(HealthMonitor(), [rec(3, train__loss=math.nan)])[0]
    event = a.to_event()
    assert event == {"kind": "alert", "alert": "nan", "message": a.message, "step": 3, "time": 1003.0,
                     "severity": "error"}
    json.dumps(event)  # goes into events.jsonl as is


# ---------------------------------------------------------------- log-probs near 0

def test_logps_near_zero_alerts_on_chosen_or_rejected_once():
    stream = [rec(1), rec(2, train__logps__chosen=-5e-4), rec(3, train__logps__chosen=-1e-4),
              rec(4, train__logps__rejected=-2e-4, train__logps__chosen=-0.5),  # same episode: rejected now
              rec(5), rec(6, train__logps__rejected=-1e-5)]
    alerts = run(HealthMonitor(), stream)
    assert names(alerts) == [("logps_near_zero", 2), ("logps_near_zero", 6)]
    assert "chosen" in alerts[0].message and "rejected" in alerts[1].message


def test_logps_just_below_the_ceiling_is_fine():
    assert run(HealthMonitor(), [rec(1, train__logps__chosen=-1.1e-3, train__logps__rejected=-0.002)]) == []


# ---------------------------------------------------------------- gradient spikes

def test_grad_spike_over_running_median():
    base = [rec(s, train__train__max_grad_norm=1.0 + 0.1 * (s % 3)) for s in range(1, 21)]
    spike = [rec(21, train__train__max_grad_norm=50.0), rec(22, train__train__max_grad_norm=60.0),
             rec(23, train__train__max_grad_norm=1.0), rec(24, train__train__max_grad_norm=45.0)]
    alerts = run(HealthMonitor(), base + spike)
    assert names(alerts) == [("grad_spike", 21), ("grad_spike", 24)]
    assert "max_grad_norm" in alerts[0].message and "median" in alerts[0].message


def test_grad_spike_needs_history_and_a_real_factor():
    early = [rec(1, train__train__max_grad_norm=1.0), rec(2, train__train__max_grad_norm=100.0)]
    assert run(HealthMonitor(), early) == []  # too little history to call anything a spike
    steady = [rec(s, train__train__max_grad_norm=1.0) for s in range(1, 30)]
    assert run(HealthMonitor(), steady + [rec(30, train__train__max_grad_norm=9.0)]) == []  # 9x < 10x


def test_grad_spike_on_mean_norm_and_non_finite_norm():
    base = [rec(s) for s in range(1, 15)]
    alerts = run(HealthMonitor(), base + [rec(15, train__train__mean_grad_norm=5.0)])
    assert names(alerts) == [("grad_spike", 15)] and "mean_grad_norm" in alerts[0].message
    alerts = run(HealthMonitor(), [rec(1, train__train__max_grad_norm=math.nan)])
    assert names(alerts) == [("grad_spike", 1)] and "nan" in alerts[0].message


# ---------------------------------------------------------------- loss rising

def test_sustained_loss_rise_alerts_once():
    falling = [rec(s, train__loss=3.0 - 0.01 * s) for s in range(1, 31)]
    rising = [rec(s, train__loss=2.7 + 0.05 * (s - 30)) for s in range(31, 80)]
    alerts = run(HealthMonitor(), falling + rising)
    assert [a.name for a in alerts] == ["loss_rising"]
    # The EMA needs 20 rises in a row; the first rising step that completes them is 30 + 20 or a few later.
    assert 50 <= alerts[0].step <= 55
    assert "->" in alerts[0].message


def test_noisy_flat_loss_does_not_alert():
    noisy = [rec(s, train__loss=2.0 + (0.3 if s % 2 else -0.3)) for s in range(1, 300)]
    assert run(HealthMonitor(), noisy) == []


def test_tiny_monotone_drift_is_not_a_rise():
    drift = [rec(s, train__loss=2.0 + 1e-6 * s) for s in range(1, 100)]
    assert run(HealthMonitor(), drift) == []


def test_loss_rise_episode_ends_when_the_ema_falls():
    c = HealthConfig(loss_rise_steps=5, loss_ema_span=2)
    up = [rec(s, train__loss=1.0 + 0.1 * s) for s in range(1, 10)]
    down = [rec(s, train__loss=0.1) for s in range(10, 13)]
    up_again = [rec(s, train__loss=1.0 + 0.2 * s) for s in range(13, 25)]
    alerts = run(HealthMonitor(c), up + down + up_again)
    assert [a.name for a in alerts] == ["loss_rising", "loss_rising"]
    assert alerts[0].step < 10 < 13 <= alerts[1].step


# ---------------------------------------------------------------- accuracy at chance

def test_accuracy_at_chance_after_step_100():
    stuck = [rec(s, train__rewards__accuracies=0.5 if s % 2 else 0.53) for s in range(1, 151)]
    alerts = run(HealthMonitor(), stuck)
    assert names(alerts) == [("accuracy_at_chance", 100)]
    assert "0.5" in alerts[0].message


def test_accuracy_learning_or_anti_learning_is_not_chance():
    learning = [rec(s, train__rewards__accuracies=0.7) for s in range(1, 200)]
    inverted = [rec(s, train__rewards__accuracies=0.3) for s in range(1, 200)]
    assert run(HealthMonitor(), learning) == [] and run(HealthMonitor(), inverted) == []


def test_accuracy_at_chance_episode_ends_when_it_learns():
    stream = ([rec(s, train__rewards__accuracies=0.5) for s in range(1, 121)]
              + [rec(s, train__rewards__accuracies=0.9) for s in range(121, 181)]
              + [rec(s, train__rewards__accuracies=0.5) for s in range(181, 300)])
    alerts = run(HealthMonitor(), stream)
    assert [a.name for a in alerts] == ["accuracy_at_chance", "accuracy_at_chance"]
    assert alerts[0].step == 100 and alerts[1].step > 181


def test_quantized_batch_accuracies_average_to_chance():
    # Batch 4: each step's accuracy is 0, .25, .5, .75 or 1; their 50-step mean is what counts.
    values = [0.25, 0.75, 0.5, 0.5, 0.0, 1.0]
    stream = [rec(s, train__rewards__accuracies=values[s % len(values)]) for s in range(1, 160)]
    assert [a.name for a in run(HealthMonitor(), stream)] == ["accuracy_at_chance"]


# ---------------------------------------------------------------- MFU

MLPERF = {"train-mlperf/flops_per_token": 6e9, "train-mlperf/execution_time": 2.0, "train/tflops": 12.0}


def test_mfu_from_the_tokens_the_step_processed():
    r = MetricRecord(1, "train", 0.0, dict(MLPERF), {"padded_tokens": 8192.0})
    # 6e9 FLOPs/token x 8192 tokens / 2 s = 24.6 TFLOP/s over a 275 TFLOP/s chip
    assert actor_mod.model_flops_utilization(r, 275.0) == pytest.approx(6e9 * 8192 / 2.0 / 1e12 / 275.0)


def test_mfu_falls_back_to_easydel_tflops_and_is_none_without_a_peak():
    r = MetricRecord(1, "train", 0.0, {"train/tflops": 55.0}, {})
    assert actor_mod.model_flops_utilization(r, 1100.0) == pytest.approx(0.05)
    assert actor_mod.model_flops_utilization(r, None) is None
    assert actor_mod.model_flops_utilization(MetricRecord(1, "train", 0.0, {}, {}), 1100.0) is None


def test_resolved_spec_carries_the_slice_peak_and_stop_on_nan():
    p = P.load(REPO / "presets" / "qwen3-14b-v4-64.toml")
    spec = resolve.resolved(p)
    assert spec["peak_tflops"] == pytest.approx(32 * 275.0)  # v4-64: 32 chips
    assert spec["stop_on_nan"] is False and "stop_on_nan" not in spec["orpo"]
    tiny = P.load(REPO / "presets" / "tiny-cpu.toml")
    tiny.orpo.stop_on_nan = True
    spec = resolve.resolved(tiny)
    assert spec["peak_tflops"] is None and spec["stop_on_nan"] is True


# ---------------------------------------------------------------- the actor

SPEC = {"preset_name": "unit", "model": {"pretrained_model_name_or_path": "m"},
        "accelerator": {"kind": "tpu", "type": "v4-8", "count": 1}, "peak_tflops": 1100.0}


@pytest.fixture
def make_actor(tmp_path):
    made = []

    def make(**spec_changes):
        a = actor_mod.RunActor(f"r{len(made)}", str(tmp_path / f"r{len(made)}"), {**SPEC, **spec_changes},
                               'name = "unit"\n', {}, {}, "127.0.0.1")
        a.info.state = STARTING
        made.append(a)
        return a

    yield make
    for a in made:
        a.receiver.close()
        a.store.close()


def send(a, step: int, **values: float) -> None:
    r = rec(step, **values)
    r.metrics.update(MLPERF)
    a._on_message({"k": "metric", "step": step, "mode": "train", "time": r.time, "metrics": r.metrics,
                   "derived": {"padded_tokens": 8192.0}})


def events(a, kind: str) -> list[dict]:
    lines = (a.run_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def test_actor_writes_alerts_to_the_event_log_once_and_adds_mfu(make_actor):
    a = make_actor()
    for s in range(1, 4):
        send(a, s)
    for s in range(4, 8):
        send(a, s, train__loss=math.nan)
    alerts = events(a, "alert")
    assert [(e["alert"], e["step"]) for e in alerts] == [("nan", 4)]
    assert a.info.state == RUNNING and not a.receiver.stop_wanted  # stop_on_nan is off
    update = a.poll(0, 0, 0, timeout=0)
    assert [e["alert"] for e in update.events if e["kind"] == "alert"] == ["nan"]
    assert update.metrics[0].derived["mfu"] == pytest.approx(6e9 * 8192 / 2.0 / 1e12 / 1100.0)
    saved = [json.loads(x) for x in (a.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert saved[0]["derived"]["mfu"] == pytest.approx(update.metrics[0].derived["mfu"])


def test_actor_without_a_peak_leaves_mfu_out(make_actor):
    a = make_actor(peak_tflops=None)
    send(a, 1)
    assert "mfu" not in a.poll(0, 0, 0, timeout=0).metrics[0].derived


def test_stop_on_nan_asks_the_trainer_to_stop_and_says_why(make_actor):
    a = make_actor(stop_on_nan=True)
    send(a, 1)
    send(a, 2, train__log_odds_chosen=math.inf)
    assert a.info.state == STOPPING and a.receiver.stop_wanted
    (stop,) = events(a, "stop")
    assert "orpo.stop_on_nan" in stop["reason"] and "log_odds_chosen" in stop["reason"] and stop["step"] == 2
    assert "NaN/Inf" in a.info.error
    kinds = [e["kind"] for e in map(json.loads, (a.run_dir / "events.jsonl").read_text().splitlines())]
    assert kinds.index("alert") < kinds.index("stop")
    send(a, 3, train__loss=math.nan)  # still NaN while the trainer gets there: no second stop
    assert len(events(a, "stop")) == 1 and len(events(a, "alert")) == 1


def test_a_client_stop_is_logged_too(make_actor):
    a = make_actor()
    send(a, 1)
    a.stop()
    assert [e["reason"] for e in events(a, "stop")] == ["stop requested by a client"]


# ---------------------------------------------------------------- headless lines

def test_headless_prints_alerts_and_stop_reasons(tmp_path):
    a = run(HealthMonitor(), [rec(7, train__loss=math.nan)])[0]
    line = cli.format_event(a.to_event(), tmp_path)
    assert line.startswith("alert: non-finite loss at step 7") and "\n" not in line
    stop = cli.format_event({"kind": "stop", "reason": "orpo.stop_on_nan: x", "time": 0.0}, tmp_path)
    assert "orpo.stop_on_nan" in stop


def test_headless_eval_line_reads_easydel_eval_names():
    r = MetricRecord(10, "eval", 0.0, {"eval/loss": 5.5, "eval/eval_nll_loss": 5.4,
                                       "eval/eval_log_odds_ratio": -0.68, "eval/eval_logps/chosen": -5.7,
                                       "eval/eval_logps/rejected": -5.8, "eval/eval_rewards/accuracies": 0.625})
    line = cli.format_step(r, 10)
    assert line.startswith("eval  @    10  loss 5.5000  nll 5.4000  log-odds -0.6800")
    assert "logp c/r -5.700/-5.800" in line and "acc 0.62" in line


def test_headless_step_line_shows_mfu_when_known():
    r = rec(3)
    assert "mfu" not in cli.format_step(r, 10)
    r.derived["mfu"] = 0.4213
    assert "mfu 42.1%" in cli.format_step(r, 10)


def test_headless_step_line_tells_nan_from_missing():
    r = rec(13, train__loss=math.inf, train__log_odds_ratio=-math.inf, train__nll_loss=math.nan)
    del r.metrics["train/logps/rejected"]
    line = cli.format_step(r, 40)
    assert line.startswith("step 13/40  loss inf  nll nan  log-odds -inf  logp c/r -1.500/-  acc 0.75")
