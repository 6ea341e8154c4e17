"""The Monitor driven by a fake run handle replaying the recorded stream.

Expectations are derived from tests/fixtures/recorded_stream.jsonl, so a recording
of a real run can replace it.
"""

from __future__ import annotations

import re
import threading

import pytest
from textual.app import App
from textual.widgets import Log

from monitor_fakes import (
    FAKE_ERROR, FAKE_TRACEBACK, FakeRunHandle, MonitorHost, load_records, log_line, wait_drained,
)
from orpo_tui import accelerators
from orpo_tui.job.records import FAILED, RUNNING, STOPPED, MetricRecord, Update
from orpo_tui.preset import Preset
from orpo_tui.series import RunHistory
from orpo_tui.ui import monitor
from orpo_tui.ui.monitor import MonitorScreen, StopConfirm, UpdateArrived
from orpo_tui.ui.widgets.panels import format_duration, format_metric
from orpo_tui.ui.widgets.plot import MARKER_GLYPH, Plot

pytestmark = pytest.mark.anyio

RECORDS = load_records()
TRAIN = [r for r in RECORDS if r.mode == "train"]
EVAL = [r for r in RECORDS if r.mode == "eval"]
LAST = TRAIN[-1]


def screen_text(app: App) -> str:
    """The screen as a person sees it, one line a row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def last_value(name: str) -> str:
    h = RunHistory()
    h.add(RECORDS)
    return format_metric(name, h.last(name))


async def settle(pilot, condition, limit: int = 400) -> None:
    for _ in range(limit):
        if condition():
            await pilot.pause()
            return
        await pilot.pause()
    raise AssertionError("condition never held")


async def test_replay_shows_the_last_step_and_state():
    app = MonitorHost(FakeRunHandle(chunks=3))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        text = screen_text(app)
        assert "● SUCCEEDED" in text
        assert f"step {LAST.step}/{LAST.step}" in text and "100%" in text
        assert f"epoch {LAST.get('epoch'):.2f}" in text
        assert f"elapsed {format_duration(RECORDS[-1].time - RECORDS[0].time)}" in text
        assert "ETA 0:00:00" in text
        assert f"total {format_metric('loss', LAST.get('loss'))}" in text
        assert f"nll {format_metric('nll_loss', LAST.get('nll_loss'))}" in text
        assert f"loss - nll {last_value('odds_ratio_loss')}" in text
        assert "lr " + format_metric("learning_rate", LAST.get("learning_rate")) in text

        await pilot.press("2")
        text = screen_text(app)
        assert f"chosen {last_value('logps_chosen')}" in text
        assert f"rejected {last_value('logps_rejected')}" in text
        assert f"log-odds {last_value('log_odds_chosen')}" in text
        assert f"logσ {last_value('log_odds_ratio')}" in text
        assert f"margin {last_value('reward_margin')}" in text
        assert f"acc {last_value('reward_accuracy')}" in text

        await pilot.press("3")
        text = screen_text(app)
        assert f"real {last_value('real_tokens_per_s')}" in text
        assert f"padded {last_value('padded_tokens_per_s')}" in text
        assert f"step {last_value('step_time')}" in text
        assert "MFU n/a" in text  # no preset: no peak to divide by

        await pilot.press("4")
        await pilot.pause()
        text = screen_text(app)
        assert log_line(LAST) in text
        assert "▸ state: succeeded" in text
        assert isinstance(app.focused, Log)


async def test_all_panels_side_by_side_on_a_large_terminal():
    app = MonitorHost(FakeRunHandle(chunks=2))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await wait_drained(pilot)
        assert screen.has_class("-wide") and screen.has_class("-tall")
        text = screen_text(app)
        for title in ("1 Loss", "2 Log-odds", "3 Throughput", "4 Log"):
            assert title in text
        assert "5 Error" not in text
        assert f"total {format_metric('loss', LAST.get('loss'))}" in text
        assert f"chosen {last_value('logps_chosen')}" in text
        assert f"real {last_value('real_tokens_per_s')}" in text
        assert log_line(LAST) in text


async def test_eval_records_are_markers_on_the_same_plots():
    app = MonitorHost(FakeRunHandle())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        plot = screen.query_one("#loss-plot-0", Plot)
        markers = [t for t in plot.last_traces if t.markers]
        lines = [t for t in plot.last_traces if not t.markers]
        assert {t.label for t in lines} == {"total", "nll"}
        assert markers and all(len(t.x) == len(EVAL) for t in markers)
        assert sorted(markers[0].x) == sorted(float(r.step) for r in EVAL)
        assert markers[0].lo[-1] == pytest.approx(EVAL[-1].get("loss"), rel=1e-6)
        text = screen_text(app)
        assert f"{MARKER_GLYPH} eval" in text
        assert text.count(MARKER_GLYPH) >= 1 + len(EVAL)


async def test_failed_run_shows_its_error_and_traceback():
    app = MonitorHost(FakeRunHandle(fail_after=len(RECORDS) // 2))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        assert screen.state == FAILED and screen.active_panel == "error"
        assert app.focused is screen.query_one("#error")
        text = screen_text(app)
        assert "● FAILED" in text
        assert FAKE_ERROR in text
        for line in FAKE_TRACEBACK.splitlines():
            assert line.strip() in text
        assert "5 Error" in text
        # The rest of the run is still there to look at.
        await pilot.press("1")
        half = [r for r in RECORDS[: len(RECORDS) // 2] if r.mode == "train"][-1]
        assert f"total {format_metric('loss', half.get('loss'))}" in screen_text(app)


async def test_failure_message_without_traceback_event_is_shown():
    class NoEvents(FakeRunHandle):
        def poll(self, timeout=0.5):
            update = super().poll(timeout)
            update.events = [e for e in update.events if e.get("kind") != "error"]
            return update

    app = MonitorHost(NoEvents(fail_after=4))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_drained(pilot)
        text = screen_text(app)
        assert FAKE_ERROR in text and "(no traceback)" in text


async def test_stop_asks_then_calls_stop_once():
    handle = FakeRunHandle(hold=True)
    app = MonitorHost(handle)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.monitor.history.records == len(RECORDS))
        assert app.monitor.state == RUNNING
        await pilot.press("s")
        assert isinstance(app.screen, StopConfirm)
        assert "checkpoint" in screen_text(app)
        await pilot.press("y")
        await settle(pilot, lambda: app.monitor.drained)
        assert handle.stop_calls == 1
        assert app.monitor.state == STOPPED
        assert "● STOPPED" in screen_text(app)
        await pilot.press("s")  # the run is over: nothing to stop
        await pilot.pause()
        assert not isinstance(app.screen, StopConfirm)
        assert handle.stop_calls == 1


async def _cancel_stop(cancels) -> FakeRunHandle:
    handle = FakeRunHandle(hold=True)
    app = MonitorHost(handle)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.monitor.state == RUNNING)
        for cancel in cancels:
            await pilot.press("s")
            assert isinstance(app.screen, StopConfirm)
            if cancel.startswith("#"):
                await pilot.click(cancel)
            else:
                await pilot.press(cancel)
            await pilot.pause()
            assert isinstance(app.screen, MonitorScreen)
            assert handle.stop_calls == 0 and not app.monitor.stop_requested
    return handle


async def test_cancelled_stop_by_key_does_not_stop():
    assert (await _cancel_stop(["n", "escape"])).stop_calls == 0


async def test_cancelled_stop_by_button_does_not_stop():
    assert (await _cancel_stop(["#stop-no"])).stop_calls == 0


async def test_updates_that_pile_up_arrive_merged_in_order(monkeypatch):
    """While the UI is busy the worker keeps polling and sends the backlog as one message."""
    records = [MetricRecord(s, "train", 1000.0 + s, {"train/loss": 1.0 / s}) for s in range(1, 41)]
    handle = FakeRunHandle(records, chunks=40)
    all_polled = threading.Event()
    original_poll, original_add = handle.poll, RunHistory.add

    def poll(timeout=0.5):
        update = original_poll(timeout)
        if update.done:
            all_polled.set()
        return update

    def slow_add(self, recs):
        all_polled.wait(5)  # the first message is held up until every poll is done
        return original_add(self, recs)

    handle.poll = poll
    monkeypatch.setattr(RunHistory, "add", slow_add)
    app = MonitorHost(handle)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        assert screen.updates_applied == 41  # 40 chunks and the final state
        assert screen.messages_applied == 2  # the first, then the whole backlog at once
        assert list(screen.history.train.steps) == [float(s) for s in range(1, 41)]
        assert screen.query_one(Log).lines[-1] == "▸ state: succeeded"


async def test_message_with_several_updates_keeps_their_order():
    handle = FakeRunHandle(hold=True, chunks=1)
    app = MonitorHost(handle)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.monitor.history.records == len(RECORDS))
        info = handle._info(RUNNING)
        before = app.monitor.messages_applied
        app.monitor.post_message(UpdateArrived([
            Update(info, logs=["first"]), Update(info, events=[{"kind": "note", "message": "second"}]),
            Update(info, logs=["third"])]))
        await settle(pilot, lambda: app.monitor.messages_applied > before and app.monitor.settled)
        assert app.monitor.query_one(Log).lines[-3:] == ["first", "▸ note: second", "third"]


async def test_mfu_uses_the_preset_accelerator_peak():
    preset = Preset()
    preset.accelerator.kind, preset.accelerator.type = "tpu", "v4-8"
    peak = accelerators.peak_tflops("tpu", "v4-8", 1)
    app = MonitorHost(FakeRunHandle(), preset)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_drained(pilot)
        await pilot.press("3")
        h = RunHistory()
        h.add(RECORDS)
        assert f"MFU {format_metric('mfu', h.last('tflops') / peak)}" in screen_text(app)


async def test_missing_metrics_show_dashes_not_errors():
    records = [MetricRecord(s, "train", 1000.0 + s, {"train/loss": 1.0 + s, "train/strange": "x"})
               for s in range(1, 6)]
    app = MonitorHost(FakeRunHandle(records))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_drained(pilot)
        text = screen_text(app)
        assert "total 6" in text and "nll -" in text
        await pilot.press("2")
        assert "chosen -  ━ rejected -" in screen_text(app) or "chosen -" in screen_text(app)
        await pilot.press("3")
        assert "TFLOP/s -" in screen_text(app)


async def test_number_keys_switch_panels():
    app = MonitorHost(FakeRunHandle())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        for key, panel in (("2", "logodds"), ("3", "throughput"), ("4", "log"), ("1", "loss")):
            await pilot.press(key)
            assert screen.active_panel == panel
            assert screen.query_one(f"#{panel}").display
        await pilot.press("5")  # no error: no error panel
        assert screen.active_panel == "loss"


async def test_window_and_zoom_keys():
    app = MonitorHost(FakeRunHandle())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        await pilot.press("w")
        assert "plots: last 10k steps" in screen_text(app)
        await pilot.press("z")
        await pilot.pause()
        assert screen.maximized is screen.query_one("#loss")
        await pilot.press("z")
        await pilot.pause()
        assert screen.maximized is None


async def test_every_binding_has_an_id_and_tooltip():
    for binding in MonitorScreen.BINDINGS + StopConfirm.BINDINGS:
        assert binding.id and binding.tooltip, binding


async def test_worker_stops_when_the_screen_is_dismissed():
    handle = FakeRunHandle(hold=True)

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(MonitorScreen(handle))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: handle.polls > len(RECORDS) // 10 and isinstance(app.screen, MonitorScreen))
        monitor = app.screen
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, MonitorScreen)
        # The worker notices within one poll timeout; wait for it, without sleeping.
        await app.workers.wait_for_complete()
        polls = handle.polls
        assert not [w for w in app.workers if w.node is monitor and not w.is_finished]
        await pilot.pause()
        assert handle.polls == polls


async def test_an_unreachable_run_is_shown_and_polling_goes_on(monkeypatch):
    monkeypatch.setattr(monitor, "RETRY_S", 0.01)
    reachable = threading.Event()

    class Flaky(FakeRunHandle):
        def poll(self, timeout=0.5):
            if self.polls >= 1 and not reachable.is_set():
                raise ConnectionError("head node went away")
            return super().poll(timeout)

    handle = Flaky(chunks=2)
    app = MonitorHost(handle)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.monitor.connection_error)
        assert "UNREACHABLE" in screen_text(app)
        reachable.set()
        screen = await wait_drained(pilot)
        assert not screen.connection_error and "● SUCCEEDED" in screen_text(app)
        assert screen.history.records == len(RECORDS)


async def test_a_diverged_value_shows_as_inf_and_keeps_the_plot():
    records = [MetricRecord(s, "train", 1000.0 + s, {"train/loss": 1.0 / s, "train/nll_loss": 0.9 / s})
               for s in range(1, 10)]
    records.append(MetricRecord(10, "train", 1010.0, {"train/loss": float("inf"), "train/nll_loss": 0.1}))
    app = MonitorHost(FakeRunHandle(records))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_drained(pilot)
        text = screen_text(app)
        assert "total inf" in text
        assert re.search(r"\b1\.0+┤", text)  # the y axis still spans the finite values
