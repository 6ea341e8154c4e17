"""orpo-tui: a terminal console for ORPO preference fine-tuning with EasyDeL on TPUs.

Layers (each importable without the ones above it): `preset` and
`accelerators` (the run model), `job` (engine: training entry, RunActor,
RunClient, run store), `ui` (Textual), `cli`.
"""

__version__ = "0.1.0"
