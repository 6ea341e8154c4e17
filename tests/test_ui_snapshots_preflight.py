"""Snapshots of the Preflight view (a fake report: no dataset, no tokenizer) at 80x24 and
160x48, the launch it refuses, and the Monitor's alerts strip.

Regenerate with `pytest tests/test_ui_snapshots_preflight.py --snapshot-update`, look at
`snapshot_report.html`, then run without the flag. Each snapshot waits on the workers
(never a sleep).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from monitor_fakes import MonitorHost, wait_drained
from preflight_fakes import FAKE_BLOCKING, FakePreflight, fake_report
from test_ui_alerts import NAN_ALERT, SPIKE_ALERT, FakeAlertingRunHandle
from ui_fakes import REPO, REPO_PRESETS, FakeRunClient

from orpo_tui.ui.app import OrpoApp, make_app

SMALL, LARGE = (80, 24), (160, 48)


@pytest.fixture(autouse=True)
def _stable_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the configure title shows the preset path relative to the cwd


def app_with(report, tmp_path: Path) -> OrpoApp:
    return make_app(REPO_PRESETS / "tiny-cpu.toml", client_factory=FakeRunClient,
                    preset_dirs=[REPO_PRESETS, tmp_path], environ={}, preflight_runner=FakePreflight(report))


async def _press_and_settle(pilot, *keys: str) -> None:
    await pilot.pause()
    await pilot.press(*keys)
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def _open_preflight(pilot) -> None:
    await _press_and_settle(pilot, "f4")


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_preflight_view(snap_compare, tmp_path: Path, size) -> None:
    # Limits that cut some pairs: ▒ bins, a ✂ in the example, truncation shares.
    report = fake_report(max_prompt_length=30, max_completion_length=10, max_length=40)
    assert snap_compare(app_with(report, tmp_path), terminal_size=size, run_before=_open_preflight)


def test_preflight_view_blocked_80x24(snap_compare, tmp_path: Path) -> None:
    report = fake_report(max_prompt_length=8, max_completion_length=8, max_length=16, blocking=[FAKE_BLOCKING])
    assert snap_compare(app_with(report, tmp_path), terminal_size=SMALL, run_before=_open_preflight)


def test_launch_refused_by_preflight_80x24(snap_compare, tmp_path: Path) -> None:
    async def launch(pilot) -> None:
        await _press_and_settle(pilot, "ctrl+r")

    report = fake_report(blocking=[FAKE_BLOCKING])
    assert snap_compare(app_with(report, tmp_path), terminal_size=SMALL, run_before=launch)


def test_monitor_alerts_80x24(snap_compare) -> None:
    async def drained(pilot) -> None:
        await wait_drained(pilot)

    app = MonitorHost(FakeAlertingRunHandle([NAN_ALERT, SPIKE_ALERT], chunks=3))
    assert snap_compare(app, terminal_size=SMALL, run_before=drained)
