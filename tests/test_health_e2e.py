"""Real tiny runs: a diverging run raises the NaN alert (and stops on it), eval metrics reach the stream."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from conftest import orpo_tui, tiny_preset

pytestmark = pytest.mark.e2e

# Found by trying (fp32 tiny model, shipped data, seed 64871): Lion's sign updates at a constant
# lr 1.0 with no clipping, and beta 100 on the odds-ratio term, blow the logits up: step 13 logs an
# infinite loss (log_odds_ratio -inf, gradient norm NaN) and every step after it is NaN. AdamW at
# lr 1.0 (the preset's maximum) stays finite for 20 steps on the same data. The schedule is
# constant so the trajectory does not depend on max_training_steps (a cosine decay to 0 over 16
# steps stays finite).
DIVERGING = {"orpo__optimizer": "lion", "orpo__learning_rate": 1.0, "orpo__learning_rate_end": 0.0,
             "orpo__scheduler": "none", "orpo__clip_grad": 0.0, "orpo__beta": 100.0}


def run_dir_of(stdout: str) -> Path:
    m = re.search(r"^run (\S+): .* -> (.+)$", stdout, re.M)
    assert m, f"no run line in output:\n{stdout}"
    return Path(m.group(2).strip())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_diverging_run_alerts_and_stops_on_nan_with_a_checkpoint(ray_head, tmp_path):
    preset = tiny_preset(tmp_path, "tiny-diverge", orpo__max_training_steps=40, orpo__stop_on_nan=True,
                         output__save_steps=0, **DIVERGING)
    proc = orpo_tui("--preset", str(preset), "--no-ui", "--runs-dir", str(tmp_path / "runs"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # stopped, not by this terminal
    run_dir = run_dir_of(proc.stdout)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["state"] == "stopped", out
    records = [r for r in jsonl(run_dir / "metrics.jsonl") if r["mode"] == "train"]
    bad = [r["step"] for r in records if not all(math.isfinite(r["metrics"][k]) for k in
                                                  ("train/loss", "train/nll_loss", "train/log_odds_ratio"))]
    assert bad, "the run never went non-finite: the divergence setting no longer diverges"
    first_bad = bad[0]
    assert records[-1]["step"] < 40  # it stopped well before the end
    events = jsonl(run_dir / "events.jsonl")
    nan_alerts = [e for e in events if e["kind"] == "alert" and e["alert"] == "nan"]
    assert len(nan_alerts) == 1 and nan_alerts[0]["step"] == first_bad  # once, although NaN persists
    assert "non-finite loss" in nan_alerts[0]["message"]
    (stop,) = [e for e in events if e["kind"] == "stop"]
    assert "orpo.stop_on_nan" in stop["reason"]
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states[-2:] == ["stopping", "stopped"]
    assert events.index(nan_alerts[0]) < events.index(stop)
    # The checkpoint the stop saved (no periodic saves in this run) is the last step's.
    ckpt = Path(info["checkpoint"])
    assert ckpt.is_dir() and ckpt.name == f"run-{records[-1]['step']}" and str(ckpt).startswith(str(run_dir))
    assert "NaN/Inf" in info["error"]
    assert re.search(rf"^alert: non-finite loss at step {first_bad}: ", proc.stdout, re.M)
    assert re.search(r"^· stopping \(checkpoint first\): orpo.stop_on_nan", proc.stdout, re.M)
    assert proc.stdout.strip().splitlines()[-1].startswith("stopped: ")
    assert "Traceback" not in out


def test_without_stop_on_nan_the_run_goes_on_and_says_it_once(ray_head, tmp_path):
    """Also: do_eval without any eval data (the seed's setting) must not crash the run at its end."""
    preset = tiny_preset(tmp_path, "tiny-diverge-on", orpo__max_training_steps=20, orpo__do_eval=True,
                         **DIVERGING)
    proc = orpo_tui("--preset", str(preset), "--no-ui", "--runs-dir", str(tmp_path / "runs"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = run_dir_of(proc.stdout)
    assert json.loads((run_dir / "run.json").read_text())["state"] == "succeeded"
    steps = [r["step"] for r in jsonl(run_dir / "metrics.jsonl") if r["mode"] == "train"]
    assert steps == list(range(1, 21))  # EasyDeL's break_on_nan no longer ends the epoch silently
    alerts = [e for e in jsonl(run_dir / "events.jsonl") if e["kind"] == "alert" and e["alert"] == "nan"]
    assert len(alerts) == 1 and alerts[0]["step"] < 20
    assert len(re.findall(r"^alert: non-finite loss", proc.stdout, re.M)) == 1
    assert re.search(r"^· no evaluation: orpo.do_eval is on but there is no eval split", proc.stdout, re.M)
    assert not [e for e in jsonl(run_dir / "events.jsonl") if e["kind"] == "stop"]


def test_eval_split_is_evaluated_every_eval_steps_and_streamed(ray_head, tmp_path):
    preset = tiny_preset(tmp_path, "tiny-eval", dataset__eval_split="test", orpo__eval_steps=5,
                         orpo__do_eval=True, orpo__max_training_steps=10)
    proc = orpo_tui("--preset", str(preset), "--no-ui", "--runs-dir", str(tmp_path / "runs"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = run_dir_of(proc.stdout)
    records = jsonl(run_dir / "metrics.jsonl")
    evals = [r for r in records if r["mode"] == "eval"]
    # Every 5 steps, at the training step; the final evaluation would repeat step 10's (same weights).
    assert [r["step"] for r in evals] == [5, 10]
    for r in evals:
        m = r["metrics"]
        assert math.isfinite(m["eval/loss"]) and m["eval/loss"] > 0
        assert math.isfinite(m["eval/eval_nll_loss"]) and 0.0 <= m["eval/eval_rewards/accuracies"] <= 1.0
        assert m["eval/eval_step"] == 8  # the 32 test pairs in batches of 4, averaged into one record
    assert evals[1]["metrics"]["eval/loss"] < evals[0]["metrics"]["eval/loss"]  # it is learning
    assert [r["step"] for r in records if r["mode"] == "train"] == list(range(1, 11))
    # The stream keeps order: step 5's eval comes right after step 5.
    order = [(r["mode"], r["step"]) for r in records]
    assert order.index(("eval", 5)) == order.index(("train", 5)) + 1
    lines = re.findall(r"^eval  @\s+(\d+)  loss (\d+\.\d+)  nll (\d+\.\d+)", proc.stdout, re.M)
    assert [int(s) for s, _, _ in lines] == [5, 10]
    assert float(lines[0][1]) == pytest.approx(evals[0]["metrics"]["eval/loss"], abs=1e-4)
    assert "32 eval pairs" in proc.stdout


def test_eval_fraction_holds_out_training_pairs_and_evaluates_at_the_end(ray_head, tmp_path):
    preset = tiny_preset(tmp_path, "tiny-holdout", dataset__eval_fraction=0.1, orpo__do_eval=True,
                         orpo__max_training_steps=4)
    proc = orpo_tui("--preset", str(preset), "--no-ui", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = run_dir_of(proc.stdout)
    (configured,) = [e for e in jsonl(run_dir / "events.jsonl") if e["kind"] == "configured"]
    assert (configured["train_examples"], configured["eval_examples"]) == (288, 32)
    evals = [r for r in jsonl(run_dir / "metrics.jsonl") if r["mode"] == "eval"]
    assert [r["step"] for r in evals] == [4] and math.isfinite(evals[0]["metrics"]["eval/loss"])
