"""Snapshots of the Runs screen (fake runs with fixed times: no clock text) and the quit question.

Started times are the RunInfos' own timestamps in UTC; durations come from their start
and end (a live run's from the injected fixed clock). Each snapshot waits on conditions.
"""

from __future__ import annotations

import pytest

from monitor_fakes import load_records
from orpo_tui.job.records import RUNNING
from runs_fakes import LIVE_ID, STOPPED_ID, FakeRunsClient, listed, runs_app, shown, wait_for

SMALL, LARGE = (80, 24), (160, 48)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_runs_list(snap_compare, size):
    async def run_before(pilot) -> None:
        await listed(pilot)

    assert snap_compare(runs_app(FakeRunsClient()), terminal_size=size, run_before=run_before)


def test_runs_overlay_marked_80x24(snap_compare):
    """A run marked for overlay, the cursor on the stopped run (its checkpoint in the details)."""
    async def run_before(pilot) -> None:
        screen = await listed(pilot)
        await pilot.press("down", "o")
        await wait_for(pilot, lambda: screen.overlay_run is not None and screen.overlay_run.run_id == STOPPED_ID,
                       "the mark")
        await shown(pilot, "◆ overlay")

    assert snap_compare(runs_app(FakeRunsClient()), terminal_size=SMALL, run_before=run_before)


def test_quit_while_a_run_is_live_80x24(snap_compare):
    async def run_before(pilot) -> None:
        from orpo_tui.ui.monitor import MonitorScreen
        from orpo_tui.ui.run_dialogs import QuitScreen

        app = pilot.app
        await listed(pilot)
        await pilot.press("enter")  # the live run is the first row
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state == RUNNING
                       and app.screen.history.records == len(load_records()) and app.screen.settled,
                       "the live run's whole replay")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), "the quit question")
        await shown(pilot, f"orpo-tui attach {LIVE_ID}")

    assert snap_compare(runs_app(FakeRunsClient()), terminal_size=SMALL, run_before=run_before)
