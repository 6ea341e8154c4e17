"""Health alerts in the Monitor: a notification when they arrive, and a strip listing them.

The run is `FakeAlertingRunHandle`: the recorded stream of `monitor_fakes`, with
alert events (made by `orpo_tui.job.health.Alert.to_event`, as the RunActor
makes them) delivered in the update that carries the step they are about.
"""

from __future__ import annotations

import pytest
from monitor_fakes import FakeRunHandle, MonitorHost, load_records, wait_drained
from textual.app import App
from textual.color import Color

from orpo_tui.job.health import ERROR, GRAD_SPIKE, LOSS_RISING, NAN, WARNING, Alert
from orpo_tui.job.records import Update
from orpo_tui.ui.monitor import MAX_ALERT_TOASTS
from orpo_tui.ui.widgets.alerts import AlertsPanel

pytestmark = pytest.mark.anyio

TRAIN = [r for r in load_records() if r.mode == "train"]
NAN_STEP, SPIKE_STEP = TRAIN[4].step, TRAIN[-3].step
NAN_ALERT = Alert(NAN, f"non-finite loss at step {NAN_STEP}: loss = nan, nll_loss = nan", NAN_STEP,
                  TRAIN[4].time, ERROR).to_event()
SPIKE_ALERT = Alert(GRAD_SPIKE, f"max_grad_norm 812 at step {SPIKE_STEP} is 40x its median 20.3",
                    SPIKE_STEP, TRAIN[-3].time, WARNING).to_event()


class FakeAlertingRunHandle(FakeRunHandle):
    """The recorded run, plus `alerts` sent with the update whose records reach their step."""

    def __init__(self, alerts: list[dict], **kwargs) -> None:
        super().__init__(**kwargs)
        self.pending_alerts = sorted(alerts, key=lambda e: e["step"])

    def poll(self, timeout: float = 0.5) -> Update:
        update = super().poll(timeout)
        reached = max((r.step for r in update.metrics if r.mode == "train"), default=None)
        if reached is not None:
            due = [e for e in self.pending_alerts if e["step"] <= reached]
            self.pending_alerts = [e for e in self.pending_alerts if e["step"] > reached]
            update.events = [*update.events, *due]
        return update


def screen_text(app: App) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def colour_of(app: App, text: str) -> Color | None:
    """The foreground colour the screen draws `text` in (the first segment holding it)."""
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            if text in segment.text and segment.style and segment.style.color:
                return Color.from_rich_color(segment.style.color)
    return None


async def test_alerts_pop_up_and_stay_listed_with_step_and_message():
    app = MonitorHost(FakeAlertingRunHandle([NAN_ALERT, SPIKE_ALERT], chunks=3))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:  # toasts are off in tests by default
        screen = await wait_drained(pilot)
        strip = screen.query_one("#alerts", AlertsPanel)
        listed = str(strip.render())
        assert "Health alerts (2)" in listed
        assert f"✗ step {NAN_STEP}  {NAN_ALERT['message']}" in listed
        assert f"⚠ step {SPIKE_STEP}  {SPIKE_ALERT['message']}" in listed
        assert listed.index(NAN_ALERT["message"]) < listed.index(SPIKE_ALERT["message"])

        text = screen_text(app)
        assert "Health alerts (2)" in text
        assert f"✗ step {NAN_STEP}  non-finite loss" in text
        assert f"⚠ step {SPIKE_STEP}  max_grad_norm" in text
        # Both notifications are on screen, with their step in the title.
        assert f"Health alert · step {NAN_STEP}" in text
        assert f"Health alert · step {SPIKE_STEP}" in text
        severities = {n.title: n.severity for n in app._notifications}
        assert severities == {f"Health alert · step {NAN_STEP}": "error",
                              f"Health alert · step {SPIKE_STEP}": "warning"}

        # NaN is drawn in the theme's error colour; the spike is not.
        error = Color.parse(app.theme_variables["text-error"])
        assert strip.has_class("-error")
        nan_colour = colour_of(app, "non-finite loss at step")
        spike_colour = colour_of(app, "max_grad_norm 812")
        assert nan_colour is not None and nan_colour.rgb == error.rgb
        assert spike_colour is not None and spike_colour.rgb != error.rgb

        # The log keeps every alert too.
        log = screen.query_one("#log").query_one("Log").lines
        assert f"▸ alert: {NAN_ALERT['message']}" in log and f"▸ alert: {SPIKE_ALERT['message']}" in log


async def test_a_burst_of_alerts_is_summed_up_not_flooded():
    burst = [Alert(LOSS_RISING, f"loss rising (alert {i})", TRAIN[2].step, TRAIN[2].time).to_event()
             for i in range(MAX_ALERT_TOASTS + 2)]
    app = MonitorHost(FakeAlertingRunHandle(burst, chunks=1))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        titles = [n.title for n in app._notifications]
        assert titles.count(f"Health alert · step {TRAIN[2].step}") == MAX_ALERT_TOASTS
        assert any("2 more health alerts" in str(n.message) for n in app._notifications)
        listed = str(screen.query_one("#alerts", AlertsPanel).render())
        assert f"Health alerts ({len(burst)})" in listed and "all in the Log panel" in listed
        assert "(alert 4)" in listed and "(alert 0)" not in listed  # the newest are listed
        assert not screen.query_one("#alerts").has_class("-error")
        log = "\n".join(screen.query_one("#log").query_one("Log").lines)
        assert all(f"▸ alert: loss rising (alert {i})" in log for i in range(len(burst)))


async def test_a_run_without_alerts_has_no_alert_strip():
    app = MonitorHost(FakeRunHandle(chunks=2))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_drained(pilot)
        assert not screen.query("#alerts")
        assert "Health alert" not in screen_text(app)
