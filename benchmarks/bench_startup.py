"""Start-up: `orpo-tui --help` and the console's first painted frame, against `python -c pass`.

Every figure is a fresh process, timed from just before it is spawned:

- baseline: `python -c pass` (the interpreter and site, nothing of ours);
- `orpo-tui --help`: the installed console script, until it exits;
- console, first frame (run_test): a fresh process builds the app with
  `make_app(presets/tiny-cpu.toml)`, runs it headless with `App.run_test()`,
  waits for the first screen to be mounted and its first refresh
  (`screen.wait_for_refresh()`), and prints the time;
- console, first frame (real terminal): `orpo-tui --preset presets/tiny-cpu.toml`
  in a pseudo-terminal (120x40) until the preset's name appears in what it
  writes (the Configure screen's first frame), then Ctrl+Q.

Cases are interleaved, one of each per round; medians over rounds. If a
target is missed, `-X importtime` names the imports that cost the most.

    .venv/bin/python benchmarks/bench_startup.py [--quick] [--rounds N] [--profile]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET_HELP_S = 0.3
TARGET_PAINT_S = 0.6
PRESET = c.REPO / "presets" / "tiny-cpu.toml"
ORPO_TUI = Path(c.PY).parent / "orpo-tui"

FIRST_FRAME = """
import time, asyncio, sys
from pathlib import Path
from orpo_tui.ui.app import make_app

async def main():
    app = make_app(Path(sys.argv[1]))
    async with app.run_test(size=(120, 40)):
        await app.screen.wait_for_refresh()
        print(time.time(), type(app.screen).__name__, flush=True)

asyncio.run(main())
"""


FIRST_FRAME_PROFILE = """
import cProfile, pstats, time, asyncio, sys
from pathlib import Path
prof = cProfile.Profile()
prof.enable()
from orpo_tui.ui.app import make_app

async def main():
    app = make_app(Path(sys.argv[1]))
    async with app.run_test(size=(120, 40)):
        await app.screen.wait_for_refresh()
        prof.disable()
        return len(list(app.screen.query("*")))

widgets = asyncio.run(main())
stats = pstats.Stats(prof).stats
total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.items())
print(f"    {widgets} widgets on the first screen; {total:.2f} s profiled in all (profiling slows it)")
want = [("configure.py", "compose", "compose() of the Configure screen and its rows"),
        ("configure.py", "on_mount", "ConfigureScreen.on_mount (set_class -wide, revalidate)"),
        ("dom.py", "update_node_styles", "restyles after a class change (subtree restyled each)"),
        ("stylesheet.py", "apply", "stylesheet applied to a node"),
        ("widget.py", "_on_compose", "widgets composed"),
        ("screen.py", "_refresh_layout", "layout passes"),
        ("_compositor.py", "render_update", "frames rendered"),
        ("<frozen importlib._bootstrap>", "_find_and_load", "imports")]
for fpath, func, label in want:
    calls = cum = 0.0
    for (path, _, name), (cc, nc, tt, ct, callers) in stats.items():
        if name == func and path.endswith(fpath):
            calls += nc
            cum = max(cum, ct)
    print(f"    {cum:6.2f} s  {int(calls):>6} calls  {label}")
"""


def _env() -> dict[str, str]:
    # No .pyc writes during timing would be unfair to the first round only; keep the user's setting.
    return {**os.environ, "TEXTUAL_ANIMATIONS": "none"}


def time_exit(cmd: list[str]) -> float:
    t0 = time.time()
    subprocess.run(cmd, cwd=c.REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.time() - t0


def time_run_test() -> float:
    t0 = time.time()
    out = subprocess.run([c.PY, "-c", FIRST_FRAME, str(PRESET)], cwd=c.REPO, env=_env(), capture_output=True,
                         text=True, check=True).stdout
    return float(out.split()[0]) - t0


def time_terminal(marker: bytes = b"tiny-cpu", cols: int = 120, rows: int = 40, timeout: float = 30.0) -> float:
    """Spawn the console in a pty; seconds until `marker` is written to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**_env(), "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
    t0 = time.time()
    proc = subprocess.Popen([str(ORPO_TUI), "--preset", str(PRESET)], cwd=c.REPO, env=env, stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True, close_fds=True)
    os.close(slave)
    seen, buf = None, b""
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([master], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            buf = (buf + chunk)[-4096:]
            if marker in buf:
                seen = time.time()
                break
        os.write(master, b"\x11")  # Ctrl+Q
        try:
            end = time.time() + 5
            while proc.poll() is None and time.time() < end:
                if select.select([master], [], [], 0.05)[0]:
                    try:
                        os.read(master, 65536)  # drain so it can write its teardown
                    except OSError:
                        break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    finally:
        os.close(master)
    if seen is None:
        raise RuntimeError("the console never drew its first frame in the pseudo-terminal")
    return seen - t0


def import_profile(code: str, top: int = 12) -> str:
    """The slowest imports (cumulative) of a fresh `python -X importtime -c code`."""
    err = subprocess.run([c.PY, "-X", "importtime", "-c", code], cwd=c.REPO, env=_env(), capture_output=True,
                         text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            depth = (len(name) - len(name.lstrip())) // 2
            rows.append((int(parts[1]), depth, name.strip()))
    rows.sort(reverse=True)
    return "\n".join(f"    {cum / 1e3:8.1f} ms  {'  ' * depth}{name}" for cum, depth, name in rows[:top])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 rounds")
    p.add_argument("--rounds", type=int, help="rounds (default 11; --quick 5)")
    p.add_argument("--profile", action="store_true", help="always show the import profile")
    p.add_argument("--no-terminal", action="store_true", help="skip the pseudo-terminal case")
    args = p.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 11)
    cases = {
        "python -c pass (baseline)": lambda: time_exit([c.PY, "-c", "pass"]),
        "orpo-tui --help": lambda: time_exit([str(ORPO_TUI), "--help"]),
        "console first frame, run_test()": time_run_test,
    }
    if not args.no_terminal:
        cases["console first frame, real terminal (pty)"] = time_terminal
    for fn in cases.values():  # warm the page cache and .pyc files once; not timed
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(rounds):
        c.note(f"startup: round {i + 1}/{rounds}")
        for name, fn in cases.items():
            times[name].append(fn())
    base = c.median(times["python -c pass (baseline)"])
    c.banner("Start-up: fresh processes, against `python -c pass`")
    print(c.machine_line())
    print(f"{rounds} interleaved rounds; medians (min..max).\n")
    rows, summary = [], {}
    for name, ts in times.items():
        med = c.median(ts)
        over = med - base
        target = None if "baseline" in name else (TARGET_HELP_S if "--help" in name else TARGET_PAINT_S)
        ok = None if target is None else over <= target
        summary[name] = {"median_s": med, "over_baseline_s": over, "ok": ok}
        rows.append([name, f"{med:.3f} ({c.spread(ts)})", "-" if target is None else f"{over:+.3f}",
                     "-" if target is None else f"<= +{target:.1f} s", c.verdict(ok)])
    print(c.table(["process", "seconds", "over baseline", "target", "verdict"], rows))
    if args.profile or any(v["ok"] is False for v in summary.values()):
        print("\nSlowest imports of `orpo_tui.cli` (what --help pays):\n")
        print(import_profile("import orpo_tui.cli"))
        print("\nSlowest imports of the console (`orpo_tui.ui.app`):\n")
        print(import_profile("import orpo_tui.ui.app"))
        print("\nWhere the console's first frame goes (cProfile of one run_test() start, cumulative):\n")
        print(subprocess.run([c.PY, "-c", FIRST_FRAME_PROFILE, str(PRESET)], cwd=c.REPO, env=_env(),
                             capture_output=True, text=True).stdout.rstrip())
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
