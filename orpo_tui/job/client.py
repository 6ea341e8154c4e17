"""RunClient: what the console and headless mode use to launch, attach and list runs.

Plain Python and Ray client calls; no textual. Every call blocks, so the UI
makes them from thread workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orpo_tui import preset as presets
from orpo_tui.job import resolve, store
from orpo_tui.job.actor import NAMESPACE, POLL_PAGE, RunActor, actor_name
from orpo_tui.job.records import FAILED, TERMINAL, RunInfo, Update


class RunHandle:
    """One attached run. `poll` returns everything new since the previous poll."""

    def __init__(self, run_id: str, run_dir: Path, actor: Any):
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self._actor = actor
        self._cursors = (0, 0, 0)
        self._log_offset = 0  # bytes of trainer.log already read, when reading from files

    def poll(self, timeout: float = 0.5) -> Update:
        if self._actor is None:
            return self._from_files()
        # Imported only with an actor: importing ray before `cluster.connect` sets the auth
        # env would leave a later connect in this process unauthenticated.
        import ray

        try:
            update = ray.get(self._actor.poll.remote(*self._cursors, timeout), timeout=timeout + 30)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError,
                ray.exceptions.GetTimeoutError, ValueError):
            self._actor = None  # the actor is gone: the run folder holds the rest
            return self._from_files()
        self._cursors = (update.metric_cursor, update.log_cursor, update.event_cursor)
        return update

    def _from_files(self) -> Update:
        info = store.read_info(self.run_dir) or RunInfo(self.run_id, FAILED, error="run.json missing")
        info = store.orphaned(info)
        mc, lc, ec = self._cursors
        metrics = store.read_metrics(self.run_dir, mc, POLL_PAGE)
        events = list(store.read_jsonl(self.run_dir / "events.jsonl", ec))
        lines: list[str] = []
        try:
            with open(self.run_dir / "trainer.log", "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
            complete = data[: data.rfind(b"\n") + 1]
            lines = complete.decode("utf-8", "replace").splitlines()
            if self._log_offset == 0:
                lines = lines[lc:]  # switching from the actor: it already sent these
            self._log_offset += len(complete)
        except OSError:
            pass
        update = Update(info, metrics, lines, events, mc + len(metrics), lc + len(lines), ec + len(events),
                        more=len(metrics) == POLL_PAGE)
        self._cursors = (update.metric_cursor, update.log_cursor, update.event_cursor)
        return update

    def info(self) -> RunInfo:
        if self._actor is not None:
            import ray

            try:
                return ray.get(self._actor.get_info.remote(), timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                self._actor = None
        return store.orphaned(store.read_info(self.run_dir) or RunInfo(self.run_id, FAILED))

    def stop(self) -> None:
        """Graceful stop: the trainer saves a checkpoint, then the run ends `stopped`."""
        if self._actor is not None:
            import ray

            ray.get(self._actor.stop.remote(), timeout=30)

    def wait(self, timeout: float | None = None) -> RunInfo:
        """Poll until the run ends (or `timeout` seconds); returns its last info."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            update = self.poll(1.0)
            if update.done or (deadline is not None and time.monotonic() > deadline):
                return update.info

    def release(self) -> None:
        """Kill an ended run's actor now rather than after its linger time."""
        if self._actor is not None and self.info().state in TERMINAL:
            import ray

            ray.kill(self._actor)
            self._actor = None


class RunClient:
    """Launches runs on Ray and finds them again, by id, from any process."""

    def __init__(self, runs_dir: Path | None = None, ray_address: str | None = None):
        self.runs_dir = Path(runs_dir).resolve() if runs_dir else store.default_runs_dir()
        self.ray_address = ray_address
        self._connected: tuple[str, bool] | None = None

    def connect(self, *, start: bool = True) -> tuple[str, bool]:
        """Join the cluster (`start=False`: only if orpo-tui's local head is already up)."""
        from orpo_tui.job import cluster

        if self._connected is None:
            self._connected = cluster.connect(self.ray_address, start=start)
        return self._connected

    def launch(self, preset: presets.Preset, *, run_id: str | None = None,
               environ: dict[str, str] | None = None, resume: bool = False) -> RunHandle:
        """Start a run of `preset`; returns a handle attached from its first step."""
        env = os.environ if environ is None else environ
        problems = presets.validate(preset)
        if problems:
            raise presets.PresetError(str(problems[0]))
        _, local = self.connect()  # before importing ray: it reads its auth mode once
        import ray

        run_id = run_id or store.new_run_id(preset.name)
        run_dir = self.runs_dir / run_id
        spec = resolve.resolved(preset, run_dir, resume=resume)
        secret_values = {"hf_token": env.get(preset.secrets.hf_token_env, ""),
                         "wandb_api_key": env.get(preset.secrets.wandb_api_key_env, "")}
        passthrough = resolve.passthrough_env(dict(env))
        if preset.logging.use_wandb and "WANDB_DIR" not in passthrough:
            passthrough["WANDB_DIR"] = str(run_dir)
        options: dict[str, Any] = {"name": actor_name(run_id), "namespace": NAMESPACE,
                                   "lifetime": "detached", "num_cpus": 0, "max_concurrency": 64}
        if local:
            options["resources"] = {"node:__internal_head__": 0.001}
        actor = ray.remote(RunActor).options(**options).remote(
            run_id, str(run_dir), spec, presets.dumps(preset.absolutized()), secret_values, passthrough,
            "127.0.0.1" if local else None)
        ray.get(actor.start.remote(), timeout=120)
        return RunHandle(run_id, run_dir, actor)

    def resume(self, run_id: str, *, environ: dict[str, str] | None = None) -> RunHandle:
        """Continue an ended run from its newest checkpoint, in the same folder and history."""
        run_dir = self.runs_dir / run_id
        info = store.read_info(run_dir)
        if info is None:
            raise KeyError(f"no run {run_id!r} in {self.runs_dir}")
        handle = self.attach(run_id)
        info = handle.info()
        if info.state not in TERMINAL:
            raise presets.PresetError(f"run {run_id} is still {info.state}: stop it before resuming")
        preset = presets.load(run_dir / "preset.toml")
        save_dir = resolve.save_directory(preset, run_dir)
        latest = store.latest_checkpoint(save_dir)
        if latest is None and "://" not in save_dir:
            raise presets.PresetError(f"run {run_id} has no checkpoint under {save_dir} to resume from")
        if latest is not None:
            store.truncate_metrics(run_dir, latest[1])
        if handle._actor is not None:
            import ray

            ray.kill(handle._actor)  # the ended run's actor: its name is needed again
            import time

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    ray.get_actor(actor_name(run_id), namespace=NAMESPACE)
                except ValueError:
                    break
                time.sleep(0.1)  # Ray frees a killed actor's name asynchronously
        return self.launch(preset, run_id=run_id, environ=environ, resume=True)

    def attach(self, run_id: str, *, connect: bool = True) -> RunHandle:
        """Attach to a run by id: its actor if alive, else its run folder.

        `connect=False` reads the run folder only, touching no cluster: all an ended
        run needs (its actor has closed the files), and it never starts a Ray head.
        """
        run_dir = self.runs_dir / run_id
        actor = None
        try:
            if connect:
                self.connect(start=False)  # no head running means no actor: never start one to look
                import ray

                actor = ray.get_actor(actor_name(run_id), namespace=NAMESPACE)
        except Exception:  # no cluster, or the actor has ended: files are the truth
            actor = None
        if actor is None and not (run_dir / "run.json").is_file():
            raise KeyError(f"no run {run_id!r} in {self.runs_dir}")
        return RunHandle(run_id, run_dir, actor)

    def list_runs(self) -> list[RunInfo]:
        """Every run in the runs folder, newest first (read from disk; no Ray needed)."""
        out = []
        for d in store.list_run_dirs(self.runs_dir):
            info = store.read_info(d)
            if info is not None:
                out.append(info)
        return out
