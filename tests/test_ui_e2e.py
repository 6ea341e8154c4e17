"""The console end to end: real tiny ORPO runs through a real local Ray head, driven by keys.

Each test drives the real app (`make_app`, a real `RunClient`) with Textual's pilot and
waits on conditions with a deadline; what the screen shows is checked against what
landed in the run's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, tiny_preset
from orpo_tui.job import store
from orpo_tui.job.client import RunClient
from orpo_tui.job.records import RUNNING, STOPPED, SUCCEEDED
from orpo_tui.series import RunHistory
from orpo_tui.ui.app import make_app
from orpo_tui.ui.monitor import MonitorScreen, StopConfirm
from orpo_tui.ui.run_dialogs import QuitScreen
from orpo_tui.ui.runs_screen import RunsScreen
from orpo_tui.ui.widgets.panels import format_metric
from runs_fakes import screen_text

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
SIZE = (80, 24)


async def wait_for(pilot, condition, what: str, timeout: float) -> None:
    """Poll `condition` between UI frames until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{screen_text(pilot.app)}")
        await pilot.pause(0.1)  # an interval to poll at, not a guess at how long anything takes
    await pilot.pause()


def console(runs: Path, preset_path: Path | None = None, **options):
    return make_app(preset_path, client_factory=lambda: RunClient(runs_dir=runs), preset_dirs=[], environ={},
                    **options)


async def launch(pilot) -> MonitorScreen:
    """Press Launch on Configure; returns the monitor once the run shows up in it."""
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, MonitorScreen), "the monitor after Launch", 120)
    return pilot.app.screen


def train_steps(run_dir: Path) -> list[int]:
    return [r.step for r in store.read_metrics(run_dir) if r.mode == "train"]


async def test_launch_from_the_ui_shows_the_numbers_that_landed_on_disk(ray_head, tmp_path):
    steps = 12
    runs = tmp_path / "runs"
    app = console(runs, tiny_preset(tmp_path, "ui-launch", orpo__max_training_steps=steps))
    async with app.run_test(size=SIZE) as pilot:
        monitor = await launch(pilot)
        await wait_for(pilot, lambda: monitor.drained, "the run to end", 150)
        assert monitor.state == SUCCEEDED
        run_dir = Path(monitor.handle.run_dir)
        records = store.read_metrics(run_dir)
        assert train_steps(run_dir) == list(range(1, steps + 1))
        # The monitor's history holds exactly the records on disk.
        on_disk = RunHistory()
        on_disk.add(records)
        assert list(monitor.history.train.steps) == list(on_disk.train.steps)
        np.testing.assert_array_equal(monitor.history.train.column("loss"), on_disk.train.column("loss"))

        def shows(name: str) -> str:
            return format_metric(name, on_disk.last(name))

        last = [r for r in records if r.mode == "train"][-1]
        assert float(np.float32(last.get("loss"))) == on_disk.last("loss")  # the very last step's number
        text = screen_text(app)
        assert "● SUCCEEDED" in text
        assert f"step {steps}/{steps}" in text and "100%" in text
        assert f"total {shows('loss')}" in text
        assert f"nll {shows('nll_loss')}" in text
        await pilot.press("2")
        await pilot.pause()
        text = screen_text(app)
        assert f"log-odds {shows('log_odds_chosen')}" in text
        assert f"logσ {shows('log_odds_ratio')}" in text
        assert f"acc {shows('reward_accuracy')}" in text
        assert json.loads((run_dir / "run.json").read_text())["state"] == SUCCEEDED


async def test_stop_from_the_ui_checkpoints_and_ends_stopped(ray_head, tmp_path):
    runs = tmp_path / "runs"
    app = console(runs, tiny_preset(tmp_path, "ui-stop", orpo__max_training_steps=2000,
                                    orpo__num_train_epochs=30, output__save_steps=0))
    async with app.run_test(size=SIZE) as pilot:
        monitor = await launch(pilot)
        await wait_for(pilot, lambda: monitor.history.last_step >= 3, "a few steps", 150)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, StopConfirm), "the stop question", 10)
        await pilot.press("y")
        await wait_for(pilot, lambda: monitor.drained, "the stopped run to end", 150)
        assert monitor.state == STOPPED
        assert "● STOPPED" in screen_text(app)
        info = json.loads((Path(monitor.handle.run_dir) / "run.json").read_text())
        assert info["state"] == STOPPED
        assert info["checkpoint"] and Path(info["checkpoint"]).is_dir()
        stopped_at = store.checkpoint_step(info["checkpoint"])
        assert 3 <= stopped_at < 2000
        assert int(monitor.history.last_step) == stopped_at == train_steps(Path(monitor.handle.run_dir))[-1]
        assert monitor.info.checkpoint == info["checkpoint"]
        assert not monitor.check_action("stop", ())  # nothing left to stop


def headless(preset: Path, runs: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orpo_tui", "--preset", str(preset), "--no-ui",
                             "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=dict(os.environ))


def read_to_step(proc: subprocess.Popen, step: int) -> str:
    """The run id, once the headless output has reached `step`."""
    run_id, seen = None, []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("run ") and run_id is None:
            run_id = line.split()[1].rstrip(":")
        if line.startswith("step") and line.split()[1].startswith(f"{step}/"):
            return run_id
    raise AssertionError("the run ended before step %d:\n%s%s" % (step, "".join(seen), proc.stderr.read()))


async def test_attach_from_the_runs_screen_to_a_headless_run_shows_every_step_once(ray_head, tmp_path):
    total = 300
    runs = tmp_path / "runs"
    proc = headless(tiny_preset(tmp_path, "headless", orpo__max_training_steps=total, orpo__num_train_epochs=4),
                    runs)
    try:
        run_id = read_to_step(proc, 3)
    finally:
        proc.kill()  # SIGKILL of the process that launched it: the run's actor goes on
        proc.wait(timeout=30)
    app = console(runs, open_runs=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listings, "the list", 30)
        runs_screen = app.screen
        listed = runs_screen.highlighted_run()
        assert listed.run_id == run_id and listed.state == RUNNING  # attached while it runs
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor", 60)
        monitor = app.screen
        await wait_for(pilot, lambda: monitor.drained, "the run to end", 150)
        assert monitor.state == SUCCEEDED
        steps = [int(s) for s in monitor.history.train.steps]
        assert steps == list(range(1, total + 1))  # the history first, then live: none missing or twice
        assert train_steps(runs / run_id) == steps
        assert f"step {total}/{total}" in screen_text(app)


async def test_quit_and_detach_leaves_the_run_going(ray_head, tmp_path):
    total = 200
    runs = tmp_path / "runs"
    app = console(runs, tiny_preset(tmp_path, "ui-detach", orpo__max_training_steps=total,
                                    orpo__num_train_epochs=3))
    async with app.run_test(size=SIZE) as pilot:
        monitor = await launch(pilot)
        run_id = monitor.handle.run_id
        await wait_for(pilot, lambda: monitor.history.last_step >= 3, "a few steps", 150)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), "the quit question", 30)
        assert f"orpo-tui attach {run_id}" in screen_text(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.return_code is not None, "the console to exit", 30)
    # The console is gone; the run is not.
    handle = RunClient(runs_dir=runs).attach(run_id)
    info = handle.wait(timeout=150)
    assert info.state == SUCCEEDED
    assert train_steps(runs / run_id) == list(range(1, total + 1))
    assert not any(e.get("kind") == "stop" for e in store.read_jsonl(runs / run_id / "events.jsonl"))
    handle.release()


#: Drives a fresh console process (no pytest around it: Textual's own stdout/stderr capture is
#: in place, and Ray is not yet imported). It opens an ended run first (read from its folder),
#: then attaches to the live one, prints what it saw, and kills itself with SIGKILL.
FRESH_CONSOLE = r"""
import asyncio, json, os, signal, sys, time
from orpo_tui.job.client import RunClient
from orpo_tui.ui.app import make_app
from orpo_tui.ui.monitor import MonitorScreen
from orpo_tui.ui.runs_screen import RunsScreen

async def until(pilot, cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.1)

async def main(runs):
    app = make_app(client_factory=lambda: RunClient(runs_dir=runs), open_runs=True, preset_dirs=[], environ={})
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listings, 30)
        runs_screen = app.screen
        order = [r.run_id for r in runs_screen.runs]
        await pilot.press("down", "enter")  # the ended run, from its folder
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.drained, 30)
        old = app.screen.handle
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is runs_screen, 10)
        await pilot.press("up", "enter")  # the live run, through the cluster
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state == "running"
                    and app.screen.history.last_step > 0, 60)
        monitor = app.screen
        print(json.dumps({"order": order, "old": old.run_id, "old_actor": old._actor is not None,
                          "live": monitor.handle.run_id, "live_actor": monitor.handle._actor is not None,
                          "state": monitor.state, "first_step": int(monitor.history.train.steps[0])}),
              file=sys.__stdout__, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the console dies; the run must not

asyncio.run(main(sys.argv[1]))
"""


def ended_run_folder(runs: Path, run_id: str) -> None:
    """A past run's folder as the actor leaves it: run.json, preset.toml, metrics.jsonl."""
    from orpo_tui.job.records import MetricRecord, RunInfo

    folder = runs / run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(RunInfo(run_id, SUCCEEDED, preset_name="old", step=3,
                                                        total_steps=3, started=1.0e9, ended=1.0e9 + 30,
                                                        run_dir=str(folder)).to_json()))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps(MetricRecord(s, "train", 1.0e9 + s, {"train/loss": 1.0 / s}).to_json()) + "\n"
        for s in (1, 2, 3)))


def test_a_fresh_console_attaches_and_its_kill_does_not_stop_the_run(ray_head, tmp_path):
    total = 400
    runs = tmp_path / "runs"
    ended_run_folder(runs, "20000101-000000-old-0000")
    proc = headless(tiny_preset(tmp_path, "fresh", orpo__max_training_steps=total, orpo__num_train_epochs=5),
                    runs)
    try:
        run_id = read_to_step(proc, 3)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    console_proc = subprocess.run([sys.executable, "-c", FRESH_CONSOLE, str(runs)],
                                  capture_output=True, text=True, cwd=REPO, timeout=120)
    assert console_proc.returncode == -9, console_proc.stderr[-3000:]  # it really was killed
    seen = json.loads(console_proc.stdout.strip().splitlines()[-1])
    assert seen["order"] == [run_id, "20000101-000000-old-0000"]
    assert seen["old_actor"] is False  # an ended run is read from its folder
    assert seen["live"] == run_id and seen["live_actor"] is True and seen["state"] == RUNNING
    assert seen["first_step"] == 1  # attached mid-run, shown from the first step
    handle = RunClient(runs_dir=runs).attach(run_id)
    info = handle.wait(timeout=150)
    assert info.state == SUCCEEDED
    assert train_steps(runs / run_id) == list(range(1, total + 1))
    handle.release()
