"""Self-contained widgets of the console: the braille Plot and the Monitor's panels."""

from orpo_tui.ui.widgets.plot import Plot, Trace, format_number

__all__ = ["Plot", "Trace", "format_number"]
