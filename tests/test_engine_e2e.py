"""Real tiny ORPO runs, headless, through Ray, eformer's executor and EasyDeL's ORPOTrainer."""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY, orpo_tui, tiny_preset

pytestmark = pytest.mark.e2e

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Fakes made at run time: a literal here would show up in W&B's diff.patch of a dirty tree.
HF_SECRET = "hf_FAKE-" + secrets.token_hex(12)
WANDB_SECRET = secrets.token_hex(20)


def run_dir_of(stdout: str) -> Path:
    m = re.search(r"^run (\S+): .* -> (.+)$", stdout, re.M)
    assert m, f"no run line in output:\n{stdout}"
    return Path(m.group(2).strip())


def steps(run_dir: Path, mode: str = "train") -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["mode"] == mode]


def trainer_logged(run_dir: Path) -> dict[int, dict]:
    """EasyDeL's own JSON progress lines (progress_bar_type="json") from trainer.log, by step."""
    out = {}
    for line in (run_dir / "trainer.log").read_text().splitlines():
        line = ANSI.sub("", line)
        if "TrainerMetrics)" in line and "{" in line:
            data = ast.literal_eval(line[line.index("{"):])
            if "train_step" in data:
                out[int(data["train_step"])] = data
    return out


@pytest.fixture(scope="module")
def tiny_run(ray_head, tmp_path_factory):
    """`orpo-tui --preset presets/tiny-cpu.toml --no-ui` with secrets set in the environment."""
    runs = tmp_path_factory.mktemp("runs")
    env = {"HF_TOKEN_FOR_EASYDEL": HF_SECRET, "WANDB_API_KEY_FOR_EASYDEL": WANDB_SECRET}
    proc = orpo_tui("--preset", str(TINY), "--no-ui", "--runs-dir", str(runs), env=env)
    return proc, run_dir_of(proc.stdout)


def test_tiny_preset_runs_to_completion(tiny_run):
    proc, run_dir = tiny_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["state"] == "succeeded"
    assert steps(run_dir) == list(range(1, 31))
    assert info["step"] == 30 and info["total_steps"] == 30
    assert Path(info["checkpoint"]).is_dir() and info["checkpoint"].startswith(str(run_dir))
    assert "Traceback" not in proc.stdout + proc.stderr
    assert re.search(r"^step 30/30  loss \d", proc.stdout, re.M)
    assert proc.stdout.strip().splitlines()[-1].startswith("succeeded: step 30/30")


def test_metrics_jsonl_equals_what_the_trainer_logged(tiny_run):
    _, run_dir = tiny_run
    witness = trainer_logged(run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(witness) == [r["step"] for r in records]
    compared = 0
    for rec in records:
        logged = witness[rec["step"]]
        for key, value in logged.items():
            ours = rec["metrics"].get(f"train/{key}")
            if not isinstance(value, float) or ours is None:
                continue
            # EasyDeL's progress line rounds some values to 3 decimals and prints others in full.
            assert ours == value or round(ours, 3) == value, (rec["step"], key, ours, value)
            compared += 1
        for key in ("loss", "nll_loss", "log_odds_ratio", "logps/chosen", "logps/rejected",
                    "rewards/accuracies", "rewards/margins", "learning_rate"):
            assert f"train/{key}" in rec["metrics"], key
        assert rec["derived"]["real_tokens"] <= rec["derived"]["padded_tokens"]
        assert rec["derived"]["real_tokens_per_s"] > 0
    assert compared > 30 * 10


def test_run_folder_holds_preset_events_and_trainer_output(tiny_run):
    _, run_dir = tiny_run
    from orpo_tui import preset as presets

    assert presets.load(run_dir / "preset.toml").name == "tiny-cpu"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states == ["pending", "starting", "running", "succeeded"]
    assert "TrainerMetrics" in (run_dir / "trainer.log").read_text()


def secret_hits(paths: list[Path], texts: list[str]) -> list[str]:
    hits = [f"<output {i}>" for i, t in enumerate(texts) if HF_SECRET in t or WANDB_SECRET in t]
    for root in paths:
        for f in (root.rglob("*") if root.is_dir() else [root]):
            if f.is_file():
                data = f.read_bytes()
                if HF_SECRET.encode() in data or WANDB_SECRET.encode() in data:
                    hits.append(str(f))
    return hits


def test_wandb_offline_run_never_writes_secret_values(ray_head, tmp_path):
    """W&B through the real wandb library (offline), secrets set: no file or output holds them."""
    preset = tiny_preset(tmp_path, "tiny-wandb", logging__use_wandb=True, orpo__max_training_steps=6,
                         logging__wandb_project="orpo-tui-tests")
    runs = tmp_path / "runs"
    env = {"HF_TOKEN_FOR_EASYDEL": HF_SECRET, "WANDB_API_KEY_FOR_EASYDEL": WANDB_SECRET,
           "WANDB_MODE": "offline"}
    proc = orpo_tui("--preset", str(preset), "--no-ui", "--runs-dir", str(runs), "--verbose", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = run_dir_of(proc.stdout)
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline, "W&B wrote no offline run"
    ray_logs = Path("/tmp/ray/session_latest/logs")
    assert secret_hits([run_dir, preset, ray_logs], [proc.stdout, proc.stderr]) == []


def test_trainer_failure_mid_run_is_kept_on_disk_and_exits_1(ray_head, tmp_path):
    runs = tmp_path / "runs"
    proc = orpo_tui("--preset", str(TINY), "--no-ui", "--runs-dir", str(runs),
                    env={"ORPO_TUI_FAULT_AT_STEP": "5"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_dir = run_dir_of(proc.stdout)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["state"] == "failed"
    assert "injected fault at step 5" in info["error"]
    assert steps(run_dir) == [1, 2, 3, 4]
    errors = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()
              if json.loads(x)["kind"] == "error"]
    assert errors and "Traceback (most recent call last)" in errors[0]["traceback"]
    assert "on_step_start" in errors[0]["traceback"]
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert re.search(r"^error: RuntimeError: injected fault at step 5", proc.stdout, re.M)


def test_sigint_saves_a_checkpoint_and_exits_130(ray_head, tmp_path):
    preset = tiny_preset(tmp_path, "tiny-long", orpo__max_training_steps=2000, orpo__num_train_epochs=40,
                         output__save_steps=0)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "orpo_tui", "--preset", str(preset), "--no-ui",
                             "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=os.environ.copy())
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("step") and line.split()[1].startswith("5/"):
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=180)
    out = "".join(seen) + rest
    assert proc.returncode == 130, out + err
    run_dir = run_dir_of(out)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["state"] == "stopped"
    done = steps(run_dir)
    assert done == list(range(1, len(done) + 1)) and 5 <= len(done) < 2000
    assert info["checkpoint"].endswith(f"run-{done[-1]}") and Path(info["checkpoint"]).is_dir()
    assert "Traceback" not in out + err
