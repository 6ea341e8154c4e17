"""How the Monitor copes with long runs: draw time, redraw per step, memory.

Feeds N recorded steps (the fixture's records, repeated with rising steps and
times, an eval every 1000 steps) through a RunHandle into a headless
MonitorScreen (`App.run_test()`, 160x48 so every panel is on screen), then:

- all panels drawn: from a key press that lays every panel out afresh (`z` to
  restore from a zoomed panel: new sizes, so every plot redraws) until every
  plot has drawn its full history;
- redraw per new step: one more record through the screen's update handler,
  the panels' refresh, and every plot redrawn; median (and p90) over repeats;
- memory: resident set size after feeding, and the peak (ru_maxrss).

Each history size runs in its own process so memory figures don't mix; the
table shows them side by side. Not a test.

    .venv/bin/python benchmarks/bench_monitor_history.py          # 100 and 100k steps
    .venv/bin/python benchmarks/bench_monitor_history.py --big    # ... and 1M
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

FIXTURE = REPO / "tests" / "fixtures" / "recorded_stream.jsonl"
CHUNK = 10_000
SIZE = (160, 48)
TARGET_DRAW_S = 1.0  # at 100k
TARGET_RSS_MB = 200.0  # at 1M


def _templates():
    from orpo_tui.job.records import MetricRecord

    records = [MetricRecord.from_json(json.loads(line))
               for line in FIXTURE.read_text().splitlines() if line.strip()]
    train = [r for r in records if r.mode == "train"][1:]  # skip the compile step
    evals = [r for r in records if r.mode == "eval"] or train[:1]
    return train, evals


class BenchRunHandle:
    """A RunHandle that hands out `steps` records, CHUNK a poll, then stays running.

    Records reuse the fixture's metric dicts (shared, not copied) so the feed itself
    costs little memory; only the monitor's own storage grows with the history.
    """

    def __init__(self, steps: int):
        from orpo_tui.job.records import RunInfo

        self.run_id = f"bench-{steps}"
        self.run_dir = Path("/nonexistent") / self.run_id
        self.steps = steps
        self.sent = 0
        self.train, self.evals = _templates()
        self.info = RunInfo(self.run_id, "running", preset_name="bench", model="tiny",
                            accelerator="cpu-1", total_steps=steps * 2, started=1e9)
        self._wake = threading.Event()

    def record(self, step: int, mode: str = "train"):
        from orpo_tui.job.records import MetricRecord

        src = self.evals if mode == "eval" else self.train
        t = src[step % len(src)]
        return MetricRecord(step, mode, 1e9 + step * 0.02, t.metrics, t.derived)

    def poll(self, timeout: float = 0.5):
        from orpo_tui.job.records import Update

        if self.sent >= self.steps:
            self._wake.wait(timeout)
            return Update(self.info)
        first = self.sent + 1
        last = min(self.steps, self.sent + CHUNK)
        out = []
        for step in range(first, last + 1):
            out.append(self.record(step))
            if step % 1000 == 0:
                out.append(self.record(step, "eval"))
        self.sent = last
        self.info.step = last
        return Update(self.info, metrics=out, logs=[f"step {last} fed"])

    def stop(self) -> None:
        pass


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return float("nan")


def _peak_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


async def _measure(steps: int, repeats: int) -> dict:
    from monitor_fakes import MonitorHost

    from orpo_tui.job.records import Update
    from orpo_tui.ui.monitor import UpdateArrived
    from orpo_tui.ui.widgets.plot import Plot

    handle = BenchRunHandle(steps)
    app = MonitorHost(handle)
    result: dict = {"steps": steps}
    async with app.run_test(size=SIZE) as pilot:
        t0 = time.perf_counter()
        while True:
            screen = app.monitor
            if screen is not None and len(screen.history.train) >= steps and screen.settled:
                break
            await pilot.pause()
        result["feed_s"] = time.perf_counter() - t0
        plots = list(screen.query(Plot))

        def all_drawn() -> bool:
            return all(p._strips is not None and p._strips_size == (p.size.width, p.size.height)
                       and p.size.width > 0 for p in plots)

        # All panels, drawn afresh after a key press.
        screen.query_one("#loss").focus()
        await pilot.press("z")
        await pilot.pause()
        draws = []
        for _ in range(3):
            t0 = time.perf_counter()
            await pilot.press("z")  # restore: every panel gets a new size and redraws
            while not all_drawn():
                await pilot.pause()
            draws.append(time.perf_counter() - t0)
            await pilot.press("z")
            await pilot.pause()
        await pilot.press("z")
        while not all_drawn():
            await pilot.pause()
        result["draw_all_s"] = statistics.median(draws)

        # One more step: handler, panel refresh, every plot redrawn.
        gc.collect()
        wall, cpu = [], []
        for i in range(repeats):
            rec = handle.record(steps + i + 1)
            message = UpdateArrived([Update(handle.info, metrics=[rec])])
            t0, c0 = time.perf_counter(), time.thread_time()
            screen._apply_update(message)
            screen._flush()
            for plot in plots:
                plot.render_line(0)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - t0)
        wall.sort()
        # CPU time of the UI thread: what the redraw costs, whatever else the machine runs.
        result["step_median_ms"] = statistics.median(cpu) * 1e3
        result["step_wall_ms"] = statistics.median(wall) * 1e3
        result["step_p90_ms"] = wall[int(0.9 * (len(wall) - 1))] * 1e3
        result["history_mb"] = screen.history.nbytes / 2**20
        result["rss_mb"] = _rss_mb()
        result["peak_mb"] = _peak_mb()
        handle._wake.set()
    return result


def _one(steps: int, repeats: int) -> None:
    print(json.dumps(asyncio.run(_measure(steps, repeats))))


def _run_sizes(sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for n in sizes:
        print(f"  measuring {n:,} steps ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--repeats", str(repeats)],
                             capture_output=True, text=True, check=True, cwd=REPO,
                             env={**os.environ, "TEXTUAL_ANIMATIONS": "none"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def _table(rows: list[dict]) -> str:
    base = rows[0]["step_median_ms"]
    head = (f"{'history (steps)':>16} {'feed s':>8} {'all panels drawn':>17} "
            f"{'redraw/step (CPU)':>18} {'wall':>8} {'p90':>8} {'vs 100':>7} {'history MB':>11} "
            f"{'RSS MB':>8} {'peak MB':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['steps']:>16,} {r['feed_s']:>8.2f} {r['draw_all_s'] * 1e3:>14.0f} ms "
            f"{r['step_median_ms']:>15.1f} ms {r['step_wall_ms']:>5.1f} ms {r['step_p90_ms']:>5.1f} ms "
            f"{r['step_median_ms'] / base:>6.2f}x {r['history_mb']:>11.1f} "
            f"{r['rss_mb']:>8.0f} {r['peak_mb']:>8.0f}")
    lines.append("")
    lines.append("targets:")
    by = {r["steps"]: r for r in rows}
    if 100_000 in by:
        r = by[100_000]
        ok = r["draw_all_s"] <= TARGET_DRAW_S
        lines.append(f"  all panels drawn at 100k <= {TARGET_DRAW_S:.0f} s: "
                     f"{r['draw_all_s'] * 1e3:.0f} ms  {'OK' if ok else 'MISSED'}")
    big = max(rows, key=lambda r: r["steps"])
    ratio = big["step_median_ms"] / base
    lines.append(f"  redraw per step independent of history: {big['steps']:,} vs {rows[0]['steps']:,} "
                 f"steps = {ratio:.2f}x  {'OK' if ratio <= 1.5 else 'MISSED'} (<= 1.5x)")
    if 1_000_000 in by:
        r = by[1_000_000]
        lines.append(f"  resident memory at 1M <= {TARGET_RSS_MB:.0f} MB: RSS {r['rss_mb']:.0f} MB, "
                     f"peak {r['peak_mb']:.0f} MB  {'OK' if r['peak_mb'] <= TARGET_RSS_MB else 'MISSED'}")
    else:
        lines.append(f"  resident memory at 1M <= {TARGET_RSS_MB:.0f} MB: run with --big")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also 1,000,000 steps")
    parser.add_argument("--repeats", type=int, default=100, help="new steps timed per size")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one, args.repeats)
        return
    sizes = [100, 100_000] + ([1_000_000] if args.big else [])
    rows = _run_sizes(sizes, args.repeats)
    print(f"Monitor history benchmark ({SIZE[0]}x{SIZE[1]}, every panel on screen, "
          f"{args.repeats} new steps timed per size; medians; redraw/step is the UI thread's "
          f"CPU time, wall and p90 are wall clock)\n")
    print(_table(rows))


if __name__ == "__main__":
    main()
