"""Snapshots of the Monitor fed the recorded stream: a finished run, a failed one, the stop
dialog, at 80x24 (one panel at a time) and 160x48 (all panels).

Deterministic: elapsed/ETA come from the records' times, and every snapshot waits
for the worker to drain (a condition, never a sleep).
"""

from __future__ import annotations

import pytest

from monitor_fakes import FakeRunHandle, MonitorHost, load_records, wait_drained

SMALL, LARGE = (80, 24), (160, 48)
RECORDS = load_records()


async def _drained(pilot) -> None:
    await wait_drained(pilot)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_monitor_recorded_run(snap_compare, size):
    assert snap_compare(MonitorHost(FakeRunHandle()), terminal_size=size, run_before=_drained)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_monitor_failed_run(snap_compare, size):
    app = MonitorHost(FakeRunHandle(fail_after=len(RECORDS) // 2))
    assert snap_compare(app, terminal_size=size, run_before=_drained)


def test_monitor_log_odds_panel_small(snap_compare):
    async def run_before(pilot) -> None:
        await wait_drained(pilot)
        await pilot.press("2")

    assert snap_compare(MonitorHost(FakeRunHandle()), terminal_size=SMALL, run_before=run_before)


def test_monitor_throughput_panel_small(snap_compare):
    async def run_before(pilot) -> None:
        await wait_drained(pilot)
        await pilot.press("3")

    assert snap_compare(MonitorHost(FakeRunHandle()), terminal_size=SMALL, run_before=run_before)


def test_monitor_stop_dialog(snap_compare):
    async def run_before(pilot) -> None:
        app = pilot.app
        for _ in range(400):
            screen = app.monitor
            if screen is not None and screen.history.records == len(RECORDS) and screen.settled:
                break
            await pilot.pause()
        await pilot.press("s")
        await pilot.pause()

    app = MonitorHost(FakeRunHandle(hold=True))
    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)
