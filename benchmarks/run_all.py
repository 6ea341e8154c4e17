"""Run every benchmark, one after another, and print their tables and a verdict summary.

    .venv/bin/python benchmarks/run_all.py            # the full set (about 15 min on 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick    # one repetition, tiny model only (about 5 min)
    .venv/bin/python benchmarks/run_all.py --only startup,ingestion --out bench.txt

Each benchmark runs in its own process (its `main(argv)` via the script), so
Ray state, imports and memory figures never leak from one into the next.
Nothing here asserts: the tables say PASS or MISS against each target. The
figures in BENCHMARKS.md come from this command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

HERE = Path(__file__).resolve().parent
# name -> (script, args in full mode, args in --quick mode); cheapest first.
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "startup": ("bench_startup.py", [], ["--quick"]),
    "ingestion": ("bench_ingestion.py", [], ["--quick"]),
    "latency": ("bench_latency.py", [], ["--quick"]),
    "monitor_history": ("bench_monitor_history.py", [], ["--repeats", "10"]),
    "trainer_overhead": ("bench_trainer_overhead.py", [], ["--quick"]),
}
VERDICT_WORDS = ("| PASS", "| MISS", " OK", " MISSED")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, tiny model only")
    p.add_argument("--only", help="comma-separated subset: " + ",".join(BENCHES))
    p.add_argument("--out", type=Path, help="also write everything printed to this file")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")

    out: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        out.append(text)

    started = time.time()
    emit("# orpo-tui benchmarks")
    emit("")
    emit(c.machine_line())
    emit(f"command: {Path(sys.executable).name} benchmarks/run_all.py {' '.join(argv or [])}".rstrip())
    emit(f"started: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    verdicts: list[tuple[str, str]] = []
    timings: list[tuple[str, float, int]] = []
    for name in names:
        script, full, quick = BENCHES[name]
        path = HERE / script
        if not path.is_file():
            emit(f"\n## {name}: {script} is not there; skipped")
            continue
        c.note(f"run_all: {name}")
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="orpo-bench-root-") as root:
            proc = subprocess.Popen([sys.executable, str(path), *(quick if args.quick else full)], cwd=c.REPO,
                                    stdout=subprocess.PIPE, text=True, env={**os.environ, c.ROOT_ENV: root})
            assert proc.stdout is not None
            for line in proc.stdout:
                emit(line.rstrip("\n"))
                if any(w in line for w in VERDICT_WORDS):
                    verdicts.append((name, line.strip()))
            rc = proc.wait()
            for home in c.reap_heads(Path(root)):  # only if the benchmark died without stopping its head
                emit(f"(stopped a Ray head {script} left running, home {home})")
        timings.append((name, time.time() - t0, rc))
        if rc != 0:
            emit(f"\n({script} exited with {rc}; its stderr is above)")

    emit("\n## Summary\n")
    emit(c.table(["benchmark", "wall s", "exit"], [[n, f"{s:.0f}", rc] for n, s, rc in timings]))
    emit("")
    for name, line in verdicts:
        emit(f"- {name}: {line}")
    emit(f"\ntotal {time.time() - started:.0f} s; {c.machine_line()}")
    if args.out:
        args.out.write_text("\n".join(out) + "\n")
    return 0 if all(rc == 0 for _, _, rc in timings) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
