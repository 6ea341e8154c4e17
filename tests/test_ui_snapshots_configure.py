"""Snapshots of the Configure screen at 80x24 (SSH default) and 160x48.

Regenerate with `pytest tests/test_ui_snapshots_configure.py --snapshot-update`, look at
`snapshot_report.html`, then run without the flag.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_fakes import REPO, REPO_PRESETS, FakeRunClient

from orpo_tui.ui.app import OrpoApp, make_app


@pytest.fixture(autouse=True)
def _stable_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # The title shows the preset path relative to the cwd.
    monkeypatch.chdir(REPO)


def app_for(name: str, tmp_path: Path) -> OrpoApp:
    return make_app(REPO_PRESETS / f"{name}.toml", client_factory=FakeRunClient,
                    preset_dirs=[REPO_PRESETS, tmp_path], environ={})


def test_configure_80x24(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(app_for("tiny-cpu", tmp_path), terminal_size=(80, 24))


def test_configure_invalid_field_80x24(snap_compare, tmp_path: Path) -> None:
    async def make_beta_invalid(pilot) -> None:
        await pilot.pause()  # run_before starts before the first screen is composed
        screen = pilot.app.screen
        screen.focus_field("orpo.beta")
        await pilot.pause()
        await pilot.press("ctrl+u", "ctrl+k", "0")
        await pilot.pause()

    assert snap_compare(app_for("tiny-cpu", tmp_path), terminal_size=(80, 24), run_before=make_beta_invalid)


def test_configure_accelerator_160x48(snap_compare, tmp_path: Path) -> None:
    async def show_accelerator(pilot) -> None:
        await pilot.pause()
        pilot.app.screen.show_section("accelerator", focus=True)
        await pilot.pause()

    assert snap_compare(app_for("qwen3-14b-v4-64", tmp_path), terminal_size=(160, 48), run_before=show_accelerator)


def test_launch_refused_80x24(snap_compare, tmp_path: Path) -> None:
    async def refuse(pilot) -> None:
        await pilot.pause()
        screen = pilot.app.screen
        screen.focus_field("orpo.learning_rate")
        await pilot.pause()
        await pilot.press("ctrl+u", "ctrl+k", "minus", "1", "ctrl+r")
        await pilot.pause()

    assert snap_compare(app_for("tiny-cpu", tmp_path), terminal_size=(80, 24), run_before=refuse)


def test_slice_picker_80x24(snap_compare, tmp_path: Path) -> None:
    async def pick(pilot) -> None:
        await pilot.pause()
        pilot.app.screen.show_section("accelerator")
        await pilot.pause()
        await pilot.press("ctrl+t")
        await pilot.pause()

    assert snap_compare(app_for("qwen3-14b-v4-64", tmp_path), terminal_size=(80, 24), run_before=pick)

