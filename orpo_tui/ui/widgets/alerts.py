"""The Monitor's alerts strip: the run's health alerts, each with its step, newest last."""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widgets import Static

__all__ = ["AlertsPanel", "alert_line", "is_error_alert"]


def is_error_alert(event: dict[str, Any]) -> bool:
    """NaN/Inf (and anything the health checks call an error) is shown as an error."""
    return event.get("severity") == "error" or event.get("alert") == "nan"


def alert_line(event: dict[str, Any]) -> Content:
    """One alert: icon, step, message (error colour for NaN, warning colour otherwise)."""
    error = is_error_alert(event)
    step = event.get("step")
    return Content.assemble(
        ("✗ " if error else "⚠ ", "bold $text-error" if error else "bold $text-warning"),
        (f"step {step}" if step is not None else "step ?", "bold"), "  ",
        (str(event.get("message") or event.get("alert") or "alert"), "$text-error" if error else ""))


class AlertsPanel(Static):
    """How many health alerts the run raised, and the latest `shown` of them (all are in the Log)."""

    DEFAULT_CSS = """
    AlertsPanel {
        height: auto;
        padding: 0 1;
        background: $warning-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    AlertsPanel.-error {
        background: $error-muted;
    }
    """

    def __init__(self, *, shown: int = 3, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.shown = shown
        self.alerts: list[dict[str, Any]] = []

    def add(self, events: list[dict[str, Any]]) -> None:
        self.alerts.extend(events)
        self.set_class(any(is_error_alert(e) for e in self.alerts), "-error")
        if self.is_mounted:
            self._paint()

    def on_mount(self) -> None:
        self._paint()

    def _paint(self) -> None:
        n = len(self.alerts)
        head = Content.assemble((f"Health alerts ({n})", "bold"),
                                ("  all in the Log panel" if n > self.shown else "", "dim"))
        lines = [head, *(alert_line(e) for e in self.alerts[-self.shown:])]
        self.update(Content("\n").join(lines))
