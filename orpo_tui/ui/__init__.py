"""The Textual console: Configure (forms over the preset model) and Monitor screens.

Reads only `orpo_tui.preset` and the engine's `RunClient`; never easydel, jax or ray.
Start it through `orpo_tui.ui.app.make_app`.
"""
