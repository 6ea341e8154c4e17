"""The run engine: training entry, metric channel, RunActor, RunClient, run store.

Nothing here imports textual; easydel, jax and eformer are imported only
inside the functions that run in the training process or the launcher.
"""
