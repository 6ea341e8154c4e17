"""Runs that survive the terminal: kill the launcher and attach, stop and resume, list without Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, orpo_tui, tiny_preset

pytestmark = pytest.mark.e2e


def launch(preset: Path, runs: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orpo_tui", "--preset", str(preset), "--no-ui",
                             "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, **(env or {})})


def read_until_step(proc: subprocess.Popen, step: int) -> tuple[str, list[str]]:
    """Read the headless output up to the line of `step`; returns (run id, lines read)."""
    lines, run_id = [], None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("run ") and run_id is None:
            run_id = line.split()[1].rstrip(":")
        if line.startswith("step") and line.split()[1].startswith(f"{step}/"):
            return run_id, lines
    raise AssertionError("run ended before step %d:\n%s%s" % (step, "".join(lines), proc.stderr.read()))


def train_steps(records: list[dict]) -> list[int]:
    return [r["step"] for r in records if r["mode"] == "train"]


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def three_runs(ray_head, tmp_path_factory):
    """A succeeded, a failed and a stopped (Ctrl-C) run in one runs folder."""
    tmp = tmp_path_factory.mktemp("three")
    runs = tmp / "runs"
    ok = orpo_tui("--preset", str(tiny_preset(tmp, "ok", orpo__max_training_steps=4)), "--no-ui",
                  "--runs-dir", str(runs))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = orpo_tui("--preset", str(tiny_preset(tmp, "bad", orpo__max_training_steps=6)), "--no-ui",
                   "--runs-dir", str(runs), env={"ORPO_TUI_FAULT_AT_STEP": "2"})
    assert bad.returncode == 1, bad.stdout + bad.stderr
    proc = launch(tiny_preset(tmp, "halted", orpo__max_training_steps=400, orpo__num_train_epochs=10,
                              output__save_steps=0), runs)
    stopped_id, _ = read_until_step(proc, 4)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=180)
    assert proc.returncode == 130
    return runs, stopped_id


def test_runs_lists_every_state_after_the_ray_cluster_is_gone(three_runs):
    runs, _ = three_runs
    from orpo_tui.job import cluster

    assert orpo_tui("stop-ray").returncode == 0
    assert cluster.local_head_address() is None
    try:
        out = orpo_tui("runs", "--runs-dir", str(runs))
        assert out.returncode == 0, out.stderr
        by_preset = {}
        for line in out.stdout.splitlines()[1:]:
            cols = line.split()
            by_preset[cols[2]] = cols[1]
        assert by_preset == {"ok": "succeeded", "bad": "failed", "halted": "stopped"}
    finally:
        import ray

        ray.shutdown()
        cluster.start_local_head()


def test_stop_then_resume_continues_from_the_checkpoint(three_runs, tmp_path):
    runs, stopped_id = three_runs
    # Work on a copy: the run folder is self-contained (absolute preset, its checkpoints).
    mine = tmp_path / "runs"
    shutil.copytree(runs / stopped_id, mine / stopped_id)
    before = train_steps([json.loads(x) for x in (mine / stopped_id / "metrics.jsonl").read_text().splitlines()])
    info = json.loads((mine / stopped_id / "run.json").read_text())
    k = int(info["checkpoint"].rsplit("run-", 1)[1])
    assert info["state"] == "stopped" and before == list(range(1, k + 1))

    out = orpo_tui("resume", stopped_id, "--no-ui", "--jsonl", "--runs-dir", str(mine))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"resumed from the checkpoint at step {k}" in out.stderr
    records = [json.loads(x) for x in (mine / stopped_id / "metrics.jsonl").read_text().splitlines()]
    assert train_steps(records) == list(range(1, 401))
    # Continued, not restarted: the schedule picks up where it stopped.
    lr = {r["step"]: r["metrics"]["train/learning_rate"] for r in records}
    assert lr[k + 1] < lr[k]
    assert train_steps(jsonl(out.stdout)) == list(range(1, 401))  # the client saw one history
    assert json.loads((mine / stopped_id / "run.json").read_text())["state"] == "succeeded"


def test_killed_launcher_then_two_attached_clients_see_every_step_once(ray_head, tmp_path):
    runs = tmp_path / "runs"
    proc = launch(tiny_preset(tmp_path, "orphan", orpo__max_training_steps=150, orpo__num_train_epochs=3), runs)
    run_id, _ = read_until_step(proc, 3)
    proc.kill()  # SIGKILL: no chance to stop or clean up anything
    proc.wait(timeout=30)
    attach = [subprocess.Popen([sys.executable, "-m", "orpo_tui", "attach", run_id, "--no-ui", "--jsonl",
                                "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in attach]
    assert [p.returncode for p in attach] == [0, 0], outs
    histories = [jsonl(o) for o, _ in outs]
    assert train_steps(histories[0]) == list(range(1, 151))
    assert histories[0] == histories[1]
    assert json.loads((runs / run_id / "run.json").read_text())["state"] == "succeeded"
