"""Pilot tests of the Runs screen and the quit question, with fake engines (no Ray).

The runs come from `runs_fakes.FakeRunsClient` (fixed RunInfos; attached runs replay the
recorded stream); expectations are derived from those infos and that stream.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from textual.widgets import OptionList

from monitor_fakes import FakeRunHandle, load_records
from orpo_tui import preset as presets
from orpo_tui.job.records import LIVE, RUNNING, STOPPED, SUCCEEDED, MetricRecord, RunInfo, Update
from orpo_tui.ui.app import make_app
from orpo_tui.ui.configure import ConfigureScreen
from orpo_tui.ui.help_screen import HelpScreen
from orpo_tui.ui.monitor import MonitorScreen, StopConfirm
from orpo_tui.ui.run_dialogs import PresetView, QuitScreen
from orpo_tui.ui.runs_screen import (
    MEDIUM_WIDTH, RunsScreen, columns_for, fit_widths, format_started, model_name, read_overlay, row_cells,
    run_duration, short_run_name,
)
from orpo_tui.ui.widgets.panels import OVERLAY_COLOR, format_duration, format_metric, format_number
from orpo_tui.ui.widgets.plot import Plot
from runs_fakes import (
    FAILED_ID, FIXED_NOW, LIVE_ID, STOPPED_ID, SUCCEEDED_ID, FakeRunsClient, fake_infos, listed, runs_app,
    screen_text, shown, wait_for,
)
from ui_fakes import REPO_PRESETS, write_metric_stream

pytestmark = pytest.mark.anyio
SIZE = (80, 24)
RECORDS = load_records()
TRAIN = [r for r in RECORDS if r.mode == "train"]


async def highlight(pilot, run_id: str) -> RunsScreen:
    screen = await listed(pilot)
    for _ in range(len(screen.runs)):
        info = screen.highlighted_run()
        if info is not None and info.run_id == run_id:
            return screen
        await pilot.press("down")
    raise AssertionError(f"{run_id} not in the list")


async def open_monitor(pilot, run_id: str) -> MonitorScreen:
    await highlight(pilot, run_id)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, MonitorScreen), "the monitor")
    monitor = pilot.app.screen
    assert isinstance(monitor, MonitorScreen)
    return monitor


def run_folders(tmp_path: Path) -> FakeRunsClient:
    """The fake runs with real folders: each has the preset it ran and its metrics.jsonl."""
    runs_dir = tmp_path / "runs"
    client = FakeRunsClient(fake_infos(runs_dir), runs_dir)
    for i, info in enumerate(client.infos):
        folder = Path(info.run_dir)
        folder.mkdir(parents=True)
        preset = presets.load(REPO_PRESETS / "tiny-cpu.toml").absolutized()
        preset.name = info.preset_name
        preset.orpo.beta = 0.1 * (i + 1)
        (folder / "preset.toml").write_text(presets.dumps(preset), encoding="utf-8")
        # Each run's own numbers: the recorded stream with its losses shifted by i.
        shifted = [MetricRecord(r.step, r.mode, r.time, {k: (v + i if k.endswith("loss") else v)
                                                         for k, v in r.metrics.items()}, dict(r.derived))
                   for r in RECORDS]
        write_metric_stream(folder / "metrics.jsonl", shifted)
    return client


# ---------------------------------------------------------------- formatting

def test_started_is_utc_and_durations_come_from_the_run_times():
    assert format_started(FIXED_NOW) == "2026-01-01 12:00"
    assert format_started(FIXED_NOW, long=False) == "01-01 12:00"
    assert format_started(0.0) == "-"
    ended = RunInfo("r", STOPPED, started=100.0, ended=4000.0)
    assert run_duration(ended, now=1e12) == 3900.0  # the clock is not read for an ended run
    live = RunInfo("r", RUNNING, started=100.0)
    assert run_duration(live, now=700.0) == 600.0
    assert math.isnan(run_duration(RunInfo("r", STOPPED, started=100.0), now=700.0))  # end unknown


def test_names_are_shortened_for_the_table():
    assert short_run_name("20260101-113000-tiny-cpu-a1b2") == "tiny-cpu-a1b2"
    assert short_run_name("my-run") == "my-run"
    assert model_name("/home/me/assets/tiny-qwen3/") == "tiny-qwen3"
    assert model_name("./models/m") == "m"
    assert model_name("Qwen/Qwen3-14B") == "Qwen/Qwen3-14B"


@pytest.mark.parametrize("width", [80, 100, 140, 160])
def test_columns_fit_the_width(width):
    columns = columns_for(width)
    rows = [row_cells(i, now=FIXED_NOW, long_dates=width >= MEDIUM_WIDTH, marked=False) for i in fake_infos()]
    widths = fit_widths(columns, rows, width - 2)
    assert sum(w + 1 for w in widths) <= width - 2
    fixed = {c.key: w for c, w in zip(columns, widths) if not c.flex}
    for c in columns:  # only the name columns shrink; numbers are never cut
        if not c.flex:
            assert fixed[c.key] >= max(len(r[c.key]) for r in rows), c.key
    assert any(c.key == "run" for c in columns) == (width >= 140)


# ---------------------------------------------------------------- the list

async def test_runs_screen_lists_every_run_with_its_columns():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        assert isinstance(app.screen_stack[0], ConfigureScreen)  # Runs opens over Configure
        text = screen_text(app)
        assert "4 runs, 1 live" in text
        for info in client.infos:
            assert info.state in text
            assert f"{info.step:,}/{info.total_steps:,}" in text
            assert format_started(info.started, long=False) in text
            assert format_duration(run_duration(info, FIXED_NOW)) in text
            if info.last_loss == info.last_loss:
                assert format_number(info.last_loss, 4) in text
        assert "0:30:00" in text  # the live run: the injected clock minus its start
        # The highlighted run's details: its full id, model and slice.
        first = client.infos[0]
        assert first.run_id in text and "cpu x1" in text
        assert screen.highlighted_run().run_id == first.run_id


async def test_wide_screen_shows_the_run_ids_and_slices():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=(160, 48)) as pilot:
        await listed(pilot)
        lines = screen_text(app).splitlines()
        for info in client.infos:
            row = next(line for line in lines if info.run_id in line and info.state in line)
            assert info.accelerator in row and format_started(info.started) in row


async def test_list_is_read_again_on_f5_and_keeps_the_cursor():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await highlight(pilot, FAILED_ID)
        before = screen.listings
        client.infos[0].step = 200  # the live run moved on
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen.listings > before, "the re-listing")
        assert "200/400" in screen_text(app)
        assert screen.highlighted_run().run_id == FAILED_ID


async def test_the_timer_refreshes_the_list(monkeypatch):
    client = FakeRunsClient()
    app = make_app(client_factory=lambda: client, preset_dirs=[], environ={}, clock=lambda: FIXED_NOW)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(RunsScreen(clock=lambda: FIXED_NOW, refresh_s=0.05))
        screen = await listed(pilot)
        await wait_for(pilot, lambda: screen.listings >= 3, "two timed refreshes")
        assert client.list_calls >= 3


async def test_no_runs_says_so():
    app = runs_app(FakeRunsClient([]))
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        assert "No runs yet" in screen_text(app)
        assert screen.highlighted_run() is None
        await pilot.press("enter", "o", "R")  # nothing to act on: nothing happens
        await pilot.pause()
        assert app.screen is screen


async def test_f6_opens_runs_from_configure_and_escape_goes_back():
    app = runs_app(FakeRunsClient(), open_runs=False)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, ConfigureScreen)
        await shown(pilot, "f6 Runs")
        await pilot.press("f6")
        await listed(pilot)
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfigureScreen)


async def test_help_lists_the_runs_keys():
    app = runs_app(FakeRunsClient())
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.text()
        for key in ("enter", "R", "o / space", "p", "f5", "esc"):
            assert key in text, key


async def test_every_binding_has_an_id_and_tooltip():
    for cls in (RunsScreen, QuitScreen, PresetView):
        for binding in cls.BINDINGS:
            assert binding.id and binding.tooltip, binding


# ---------------------------------------------------------------- opening runs

async def test_enter_opens_an_ended_run_read_only_from_its_folder(tmp_path):
    client = run_folders(tmp_path)
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, STOPPED_ID)
        assert client.attached == [(STOPPED_ID, False)]  # no cluster for an ended run
        # Read-only from the first frame, before any poll answered.
        assert monitor.state == STOPPED and not monitor.check_action("stop", ())
        await wait_for(pilot, lambda: monitor.drained, "the whole history")
        assert monitor.history.records == len(RECORDS)
        assert monitor.preset is not None and monitor.preset.name == "qwen3-14b-v4-64"
        assert monitor.preset.orpo.beta == pytest.approx(0.2)  # the run's own preset.toml
        await pilot.press("s")
        await pilot.pause()
        assert not isinstance(app.screen, StopConfirm)
        assert "s Stop" not in screen_text(app)
        # Curves and the log are there; so is the preset.
        assert f"total {format_metric('loss', TRAIN[-1].get('loss'))}" in screen_text(app)
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, PresetView)
        assert 'name = "qwen3-14b-v4-64"' in app.screen.toml_text
        assert "beta = 0.2" in app.screen.toml_text
        await pilot.press("escape")
        await pilot.press("4")
        await pilot.pause()
        assert "▸ state: stopped" in screen_text(app)
        await pilot.press("escape")  # back to the list
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_enter_on_a_live_run_attaches_through_the_cluster_and_can_stop():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, LIVE_ID)
        assert client.attached == [(LIVE_ID, True)]
        await wait_for(pilot, lambda: monitor.history.records == len(RECORDS), "the replay")
        assert monitor.state == RUNNING and monitor.check_action("stop", ())
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, StopConfirm)
        await pilot.press("y")
        await wait_for(pilot, lambda: monitor.drained, "the stop")
        assert client.handles[0].stop_calls == 1 and monitor.state == STOPPED


class PagingRunHandle:
    """A fake RunHandle whose first polls page through a long history (`more=True`), then
    hands out live steps a few at a time, like the real actor does for a late attach."""

    def __init__(self, run_id: str, history: int, live: int, page: int):
        self.run_id = run_id
        self.run_dir = Path("/nonexistent") / run_id
        self.records = [MetricRecord(s, "train", 1000.0 + s, {"train/loss": 1.0 + 1.0 / s})
                        for s in range(1, history + live + 1)]
        self.history, self.page = history, page
        self.cursor = 0
        self.pages: list[tuple[int, int, bool]] = []

    def poll(self, timeout: float = 0.5) -> Update:
        n = len(self.records)
        end = min(self.cursor + (self.page if self.cursor < self.history else 7), n)
        batch = self.records[self.cursor:end]
        self.cursor = end
        more = self.cursor < self.history
        state = SUCCEEDED if self.cursor == n else RUNNING
        self.pages.append((batch[0].step if batch else 0, len(batch), more))
        info = RunInfo(self.run_id, state, step=self.cursor, total_steps=n, started=1000.0)
        return Update(info, batch, metric_cursor=self.cursor, more=more)

    def stop(self) -> None:
        pass


async def test_attach_shows_the_whole_history_then_live_steps_each_once():
    client = FakeRunsClient()
    handle = PagingRunHandle(LIVE_ID, history=2500, live=60, page=1000)
    client.attach = lambda run_id, connect=True: handle
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, LIVE_ID)
        await wait_for(pilot, lambda: monitor.drained, "the paged history and the live steps")
        assert [more for _, _, more in handle.pages[:3]] == [True, True, False]  # it did page
        steps = [int(s) for s in monitor.history.train.steps]
        assert steps == list(range(1, 2561))
        assert f"step 2,560/2,560" in screen_text(app)


async def test_opening_a_run_that_vanished_says_why():
    client = FakeRunsClient()

    def gone(run_id, connect=True):
        raise KeyError(f"no run {run_id!r} in /fake/runs")

    client.attach = gone
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not screen.busy, "the failed open")
        assert isinstance(app.screen, RunsScreen)
        assert any("no run" in str(n.message) for n in app._notifications)


# ---------------------------------------------------------------- resume

async def test_R_resumes_a_stopped_run_and_shows_it():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await highlight(pilot, STOPPED_ID)
        assert screen.check_action("resume", ())
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the resumed run's monitor")
        assert client.resumed == [STOPPED_ID]
        assert app.screen.handle.run_id == STOPPED_ID
        assert STOPPED_ID in app.followed


@pytest.mark.parametrize("run_id", [LIVE_ID, SUCCEEDED_ID])
async def test_R_refuses_a_live_or_succeeded_run(run_id):
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await highlight(pilot, run_id)
        assert not screen.check_action("resume", ())
        screen.action_resume()  # the palette or a stale key press
        await pilot.pause()
        assert client.resumed == [] and app.screen is screen
        assert any("only a stopped or failed run" in str(n.message) for n in app._notifications)


async def test_resume_without_a_checkpoint_is_refused_with_the_reason():
    client = FakeRunsClient(resume_error=presets.PresetError("run x has no checkpoint under /c to resume from"))
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await highlight(pilot, FAILED_ID)
        await pilot.press("R")
        await wait_for(pilot, lambda: not screen.busy, "the refused resume")
        assert app.screen is screen
        assert any("no checkpoint" in str(n.message) for n in app._notifications)


# ---------------------------------------------------------------- overlay

async def test_overlay_draws_the_marked_run_beside_the_opened_one(tmp_path):
    client = run_folders(tmp_path)
    marked = client.infos[1]  # the stopped run: its losses are the recording's + 1
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await highlight(pilot, STOPPED_ID)
        await pilot.press("o")
        await pilot.pause()
        assert screen.overlay_run.run_id == STOPPED_ID
        assert "◆" in screen_text(app) and "overlay" in screen_text(app)
        monitor = await open_monitor(pilot, SUCCEEDED_ID)
        await wait_for(pilot, lambda: monitor.drained, "the opened run")
        own = read_overlay(marked).history
        label = short_run_name(STOPPED_ID)

        loss_plot = monitor.query_one("#loss-plot-0", Plot)
        trace = next(t for t in loss_plot.last_traces if t.label == label)
        assert trace.color == OVERLAY_COLOR and not trace.markers
        assert list(trace.x) == [float(r.step) for r in TRAIN]
        assert list(trace.lo) == pytest.approx([r.get("loss") + 1 for r in TRAIN], rel=1e-6)
        assert trace.value == format_metric("loss", own.last("loss"))
        own_trace = next(t for t in loss_plot.last_traces if t.label == "total")
        assert list(own_trace.lo) != list(trace.lo)  # two runs, two curves
        assert f"{label} {trace.value}" in screen_text(app)  # the legend names the run

        await pilot.press("2")
        await pilot.pause()
        odds = monitor.query_one("#logodds-plot-1", Plot)
        trace = next(t for t in odds.last_traces if t.label == label)
        assert list(trace.lo) == pytest.approx([r.get("log_odds_chosen") for r in TRAIN], rel=1e-6)
        assert f"{label} {trace.value}" in screen_text(app)
        # Plots that compare nothing stay as they were.
        assert all(t.label != label for t in monitor.query_one("#logodds-plot-0", Plot).last_traces)


async def test_overlay_toggles_and_is_not_drawn_over_itself(tmp_path):
    client = run_folders(tmp_path)
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await highlight(pilot, STOPPED_ID)
        await pilot.press("o")
        await pilot.press("o")
        await pilot.pause()
        assert screen.overlay_run is None
        await pilot.press("space")
        monitor = await open_monitor(pilot, STOPPED_ID)  # the marked run itself
        await wait_for(pilot, lambda: monitor.drained, "the run")
        labels = {t.label for t in monitor.query_one("#loss-plot-0", Plot).last_traces}
        assert short_run_name(STOPPED_ID) not in labels


async def test_p_shows_the_highlighted_runs_preset(tmp_path):
    app = runs_app(run_folders(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await highlight(pilot, FAILED_ID)
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, PresetView)
        assert FAILED_ID in screen_text(app)
        assert "beta = 0.30000000000000004" in app.screen.toml_text or "beta = 0.3" in app.screen.toml_text


# ---------------------------------------------------------------- quitting

async def quit_app(pilot) -> None:
    await pilot.press("ctrl+q")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, QuitScreen) or pilot.app.return_code is not None,
                   "the quit question or the exit")


async def test_quit_with_nothing_followed_leaves_at_once():
    app = runs_app(FakeRunsClient())
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot)
        await quit_app(pilot)
        assert app.return_code == 0


async def test_quit_after_an_ended_run_leaves_without_asking(tmp_path):
    client = run_folders(tmp_path)
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, SUCCEEDED_ID)
        await wait_for(pilot, lambda: monitor.drained, "the run")
        await quit_app(pilot)
        assert app.return_code == 0


async def live_run_then_quit(pilot, client: FakeRunsClient) -> QuitScreen:
    monitor = await open_monitor(pilot, LIVE_ID)
    await wait_for(pilot, lambda: monitor.state == RUNNING, "the live run")
    await quit_app(pilot)
    assert isinstance(pilot.app.screen, QuitScreen), "quitting with a live run must ask"
    return pilot.app.screen


async def test_quit_while_live_offers_stop_detach_cancel():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await live_run_then_quit(pilot, client)
        text = screen_text(app)
        assert "1 run still live" in text and LIVE_ID in text
        assert "Stop the run (checkpoint first)" in text
        assert "Detach (the run goes on;" in text and f"orpo-tui attach {LIVE_ID})" in text
        assert "Cancel" in text
        assert dialog.query_one(OptionList).highlighted == 1  # Detach: leaving never stops a run
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MonitorScreen) and app.return_code is None
        assert client.handles[0].stop_calls == 0


async def test_quit_and_detach_leaves_the_run_going():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await live_run_then_quit(pilot, client)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.return_code is not None, "the exit")
        assert app.return_code == 0
        assert client.handles[0].stop_calls == 0


async def test_quit_and_stop_asks_the_run_to_checkpoint_and_stop():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await live_run_then_quit(pilot, client)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.return_code is not None, "the exit")
        assert client.handles[0].stop_calls == 1


async def test_quit_asks_about_a_live_run_whose_monitor_was_closed():
    client = FakeRunsClient()
    app = runs_app(client)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, LIVE_ID)
        await wait_for(pilot, lambda: monitor.state == RUNNING, "the live run")
        await pilot.press("escape")  # back to the list: the run goes on
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        await quit_app(pilot)
        assert isinstance(app.screen, QuitScreen)


async def test_quit_from_a_launched_run_uses_the_monitors_state_when_the_handle_cannot_say():
    """monitor_fakes' handle has no info(): the monitor's last state decides."""
    handle = FakeRunHandle(hold=True, run_id="fake-launch")
    app = make_app(attach_run=handle, client_factory=FakeRunsClient, preset_dirs=[], environ={})
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state in LIVE,
                       "the attached run")
        await quit_app(pilot)
        assert isinstance(app.screen, QuitScreen)
        assert "fake-launch" in screen_text(app)


async def test_quit_falls_back_to_the_run_folder_when_the_run_cannot_be_asked(tmp_path):
    """No info() and no open monitor: run.json decides (here: the run ended, so no question)."""
    import json

    handle = FakeRunHandle(hold=True, run_id="fake-ended")
    handle.run_dir = tmp_path / "fake-ended"
    handle.run_dir.mkdir()
    (handle.run_dir / "run.json").write_text(json.dumps(RunInfo("fake-ended", STOPPED).to_json()))
    app = make_app(attach_run=handle, client_factory=FakeRunsClient, preset_dirs=[], environ={})
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state in LIVE,
                       "the attached run")
        await pilot.press("escape")  # its monitor closes: only the folder is left to ask
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigureScreen), "Configure")
        await quit_app(pilot)
        assert app.return_code == 0
