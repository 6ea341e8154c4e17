"""Step-to-screen latency over a real run: trainer's log_metrics -> client's poll -> monitor drawn.

A real tiny ORPO run (private local Ray head, RunClient.launch, the RunActor,
eformer's trainer process) is watched by the real console: `make_app(...)`
run headless with `App.run_test()`, the MonitorScreen fed by the real
RunHandle. Three clocks (one machine, one wall clock):

- trainer: the record's `time`, stamped by `Reporter.metric` when the
  trainer's `log_metrics` call happens;
- client: when `RunHandle.poll()` returned the record, in the monitor's poll
  worker (the handle is wrapped to stamp each record);
- drawn: the monitor has no public "record rendered" hook, so the
  monitor's redraw (`MonitorScreen._flush`, run by its REDRAW_INTERVAL timer
  once a message handler applied an update) is wrapped: after a flush that
  drew new records it calls `call_after_refresh`, which Textual runs once
  the screen has no pending repaint, i.e. after the compositor rendered the
  frame holding them. Headless skips only the last step, turning that frame
  into escape codes and writing it (timed separately below, for a full
  160x48 frame).

    .venv/bin/python benchmarks/bench_latency.py [--quick] [--steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET_P99_MS = 150.0
SIZE = (160, 48)  # every panel on screen at once


class StampingHandle:
    """A RunHandle that notes when each record left `poll()` (everything else passes through)."""

    def __init__(self, handle: Any):
        self._handle = handle
        self.client_time: dict[tuple[str, int], float] = {}
        self.trainer_time: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.cpu_start: tuple[float, float] | None = None
        self.cpu_end: tuple[float, float] | None = None

    def cpu_share(self) -> float:
        """CPU seconds this (console) process used per wall second, from the first record to the end."""
        if self.cpu_start is None or self.cpu_end is None:
            return math.nan
        return (self.cpu_end[1] - self.cpu_start[1]) / max(1e-9, self.cpu_end[0] - self.cpu_start[0])

    def poll(self, timeout: float = 0.5):
        update = self._handle.poll(timeout)
        now = time.time()
        if update.metrics and self.cpu_start is None:
            self.cpu_start = (now, time.process_time())
        if update.done and self.cpu_end is None:
            self.cpu_end = (now, time.process_time())
        with self.lock:
            for r in update.metrics:
                self.client_time.setdefault((r.mode, r.step), now)
                self.trainer_time.setdefault((r.mode, r.step), r.time)
        return update

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def instrument(screen: Any, stamps: StampingHandle, drawn: dict[tuple[str, int], float]) -> bool:
    """Wrap the monitor's redraw so a frame that drew new records stamps them when rendered."""
    flush = getattr(screen, "_flush", None)
    if flush is None:
        return False

    def on_rendered(keys: list[tuple[str, int]]) -> None:
        now = time.time()
        for k in keys:
            drawn.setdefault(k, now)

    def timed_flush() -> None:
        with stamps.lock:
            applied = [k for k in stamps.client_time if k not in drawn]
        flush()
        # Records the handler has applied by now are in this flush's frame.
        history_last = getattr(screen.history, "last_step", None)
        keys = [k for k in applied if k[0] != "train" or history_last is None or k[1] <= history_last]
        if keys:
            screen.call_after_refresh(on_rendered, keys)

    screen._flush = timed_flush
    return True


def frame_encode_ms(app: Any) -> float:
    """Cost of what headless skips: one full frame as terminal escape codes (private API; best effort)."""
    try:
        screen = app.screen
        t = []
        for _ in range(5):
            update = screen._compositor.render_update(full=True, screen_stack=app._background_screens)
            t0 = time.perf_counter()
            update.render_segments(app.console)
            t.append(time.perf_counter() - t0)
        return 1e3 * c.median(t)
    except Exception:
        return math.nan


async def _watch(preset_path: Path, handle: StampingHandle, timeout: float) -> dict[str, Any]:
    from orpo_tui.ui.app import make_app

    drawn: dict[tuple[str, int], float] = {}
    out: dict[str, Any] = {"drawn": drawn}
    app = make_app(preset_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.monitor_screen(handle, None)
        out["instrumented"] = instrument(screen, handle, drawn)
        await app.push_screen(screen)
        deadline = time.monotonic() + timeout
        while not getattr(screen, "drained", False) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        out["frame_encode_ms"] = frame_encode_ms(app)
        out["state"] = getattr(screen, "state", "?")
    return out


class PacedHandle:
    """A stand-in run for the UI-only row: a thread "logs" one real-looking record every 1/rate s.

    `poll` long-polls like the RunActor (returns as soon as something is new), so
    trainer -> client is ~0 here and client -> drawn is the console's own cost.
    """

    def __init__(self, steps: int, rate: float):
        from bench_ingestion import LOG_LINE, METRICS

        self.run_id = "bench-replay"
        self.run_dir = Path("/nonexistent") / self.run_id
        self.steps, self.rate = steps, rate
        self.metrics, self.log_line = METRICS, LOG_LINE
        self.records: list[Any] = []
        self.cursor = 0
        self.done = False
        self.started = time.time()
        self.cond = threading.Condition()
        self.first_poll = threading.Event()
        threading.Thread(target=self._train, daemon=True).start()

    def _train(self) -> None:
        from orpo_tui.job.records import MetricRecord

        self.first_poll.wait()
        t0 = time.monotonic() + 0.5  # as in a real run, the screen is up before the first step
        for i in range(1, self.steps + 1):
            time.sleep(max(0.0, t0 + i / self.rate - time.monotonic()))
            rec = MetricRecord(i, "train", time.time(), dict(self.metrics),
                               {"real_tokens_per_s": 10_000.0, "padded_tokens_per_s": 26_000.0, "step_time_s": 0.02})
            with self.cond:
                self.records.append(rec)
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def poll(self, timeout: float = 0.5):
        from orpo_tui.job.records import RunInfo, Update

        self.first_poll.set()
        with self.cond:
            self.cond.wait_for(lambda: len(self.records) > self.cursor or self.done, timeout)
            new = self.records[self.cursor:]
            self.cursor = len(self.records)
            state = "succeeded" if self.done and not new else "running"
        info = RunInfo(self.run_id, state, preset_name="bench-replay", model="tiny", accelerator="cpu x1",
                       step=new[-1].step if new else 0, total_steps=self.steps, started=self.started,
                       ended=time.time() if state == "succeeded" else 0.0)
        return Update(info, metrics=new, logs=[self.log_line] * len(new))

    def stop(self) -> None:
        pass

    def release(self) -> None:
        pass


def measure_replay(steps: int, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="orpo-bench-latency-") as tmp:
        preset_path = c.write_preset(Path(tmp) / "bench-replay.toml", name="bench-replay")
        c.note(f"latency: {steps} records at {rate:g}/s into the headless console, no trainer running")
        handle = StampingHandle(PacedHandle(steps, rate))
        result = asyncio.run(_watch(preset_path, handle, timeout=steps / rate + 60))
    result["stamps"] = handle
    return result


def _follow(handle: StampingHandle, timeout: float) -> dict[str, Any]:
    """The headless client: a plain poll loop, as `orpo-tui --no-ui` runs it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = handle.poll(0.5)
        if update.done:
            return {"drawn": {}, "instrumented": True, "state": update.state, "has_ui": False}
    return {"drawn": {}, "instrumented": True, "state": "timeout", "has_ui": False}


def measure(steps: int, ui: bool = True) -> dict[str, Any]:
    from orpo_tui import preset as presets

    # The caller holds one private ORPO_TUI_HOME for all runs: Ray reads its auth token path once.
    with tempfile.TemporaryDirectory(prefix="orpo-bench-latency-") as tmp:
        work = Path(tmp)
        preset_path = c.write_preset(work / "bench-latency.toml", name="bench-latency", changes={
            "orpo": {"num_train_epochs": max(1, math.ceil(steps * 4 / 320)), "max_training_steps": steps},
            "output": {"save_steps": 0, "do_last_save": False}})
        _, head_s = c.start_head()
        try:
            import os

            os.environ.update(c.bench_env())  # the trainer gets the passthrough ones (offline, CPU)
            from orpo_tui.job.client import RunClient

            c.note(f"latency: launching a {steps}-step tiny run, watched by "
                   + ("the headless console" if ui else "a plain poll loop (no UI)"))
            handle = StampingHandle(RunClient(work / "runs").launch(presets.load(preset_path)))
            if ui:
                result = asyncio.run(_watch(preset_path, handle, timeout=600))
            else:
                result = _follow(handle, timeout=600)
            handle.release()
        finally:
            c.stop_head()
    result["stamps"] = handle
    return result


def flatten(r: dict[str, Any]) -> dict[str, Any]:
    """A measurement as plain JSON: one [step, trainer, client, drawn or None] row per train record."""
    h: StampingHandle = r["stamps"]
    drawn = r["drawn"]
    rows = [[k[1], h.trainer_time[k], h.client_time[k], drawn.get(k)] for k in sorted(h.client_time)
            if k[0] == "train"]
    return {"records": rows, "cpu_share": h.cpu_share(), "state": r.get("state"), "has_ui": r.get("has_ui", True),
            "instrumented": r.get("instrumented", False), "frame_encode_ms": r.get("frame_encode_ms", math.nan)}


def measure_isolated(steps: int, ui: bool) -> dict[str, Any]:
    """`measure` in a fresh process (Ray is initialised once per process); reaps its head if it died."""
    try:
        out = subprocess.run([c.PY, __file__, "--one", "ui" if ui else "no-ui", "--steps", str(steps)],
                             cwd=c.REPO, stdout=subprocess.PIPE, text=True, timeout=900)
    finally:
        c.stop_head()  # a no-op unless the child left its head running
    if out.returncode != 0:
        raise RuntimeError(f"the latency run exited with {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(results: list[tuple[str, dict[str, Any]]], steps: int) -> dict[str, Any]:
    c.banner("Step-to-screen latency: trainer log_metrics -> RunHandle.poll() -> monitor drawn")
    print(c.machine_line())
    print(f"console headless at {SIZE[0]}x{SIZE[1]} (every panel on screen); nearest-rank percentiles.\n")
    rows, summary = [], {}
    for label, r in results:
        recs = r["records"]
        to_client = [1e3 * (client - trainer) for _, trainer, client, _ in recs]
        to_drawn = [1e3 * (drawn - trainer) for _, trainer, _, drawn in recs if drawn is not None]
        client_to_drawn = [1e3 * (drawn - client) for _, _, client, drawn in recs if drawn is not None]
        paths = [("log_metrics -> client's hands (poll returned)", to_client, TARGET_P99_MS)]
        if r["has_ui"]:
            paths += [("log_metrics -> drawn by the monitor", to_drawn, TARGET_P99_MS),
                      ("poll returned -> drawn", client_to_drawn, None)]
        for name, xs, target in paths:
            p50, p99, mx = c.percentile(xs, 50), c.percentile(xs, 99), max(xs, default=math.nan)
            summary[f"{label}: {name}"] = {"p50": p50, "p99": p99}
            rows.append([label, name, f"{p50:.1f}", f"{p99:.1f}", f"{mx:.1f}", len(xs),
                         f"p99 <= {target:.0f} ms" if target else "-",
                         c.verdict(p99 <= target if target and xs else None)])
        if not r.get("instrumented"):
            print(f"({label}: the monitor has no _flush to wrap: the drawn rows are empty)")
    print(c.table(["run", "path", "p50 ms", "p99 ms", "max ms", "records", "target", "verdict"], rows))
    print("\nclient process CPU while records streamed (UI thread, poll worker, Ray client), in cores: "
          + "; ".join(f"{label}: {r['cpu_share']:.2f}" for label, r in results))
    enc = results[0][1].get("frame_encode_ms", math.nan)
    print(f"\nnot in the drawn figures (headless skips it): encoding one full {SIZE[0]}x{SIZE[1]} frame as "
          f"escape codes, {enc:.1f} ms (a real terminal redraws only what changed).")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a shorter run (120 steps)")
    p.add_argument("--steps", type=int, help="train steps of the watched run (default 300)")
    p.add_argument("--replay-rate", type=float, default=30.0,
                   help="records/s of the UI-only row (default 30, about the tiny run's pace here)")
    p.add_argument("--no-replay", action="store_true", help="skip the UI-only row")
    p.add_argument("--one", choices=("ui", "no-ui"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    steps = args.steps or (120 if args.quick else 300)
    if args.one:  # a child of measure_isolated: the parent holds the private home
        print(json.dumps(flatten(measure(steps, ui=args.one == "ui"))))
        return {}
    with c.private_home():
        results = [(f"real run, console ({steps} steps)", measure_isolated(steps, ui=True))]
        if not args.quick:
            results.append((f"real run, poll loop, no UI ({steps} steps)", measure_isolated(steps, ui=False)))
    if not args.no_replay:
        results.append((f"UI only: {args.replay_rate:g} rec/s, no trainer",
                        flatten(measure_replay(steps, args.replay_rate))))
    return report(results, steps)


if __name__ == "__main__":
    main(sys.argv[1:])
