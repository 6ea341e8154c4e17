"""Trainer overhead: the same ORPO run bare (in-process EasyDeL) and through `orpo-tui --no-ui`.

Both arms train the same preset (same assets, steps, batch, lengths, seed;
no checkpoints, so saving never lands inside the timed window):

- bare: `benchmarks/bare_orpo.py`, a plain script in the seed tutorial's
  shape calling `ed.ORPOTrainer(...).train()` in its own process, with no Ray
  running on the machine at all;
- console: a local orpo-tui Ray head is started (timed: "Ray start"), then
  `orpo-tui --preset P --no-ui` runs it (RunActor, eformer executor, metric
  channel, run files, the headless printer polling), then the head is stopped.

Steady-state speed comes from per-step wall-clock stamps taken at the same
point of EasyDeL's loop on both sides (after `log_metrics`): metrics.jsonl's
`time` for the console, a `log_metrics` override for bare. Warm-up steps are
dropped; steps/s is 1 / median step interval (robust to a neighbour's burst
on a shared machine). Arms alternate A/B, B/A across repetitions; the table
shows medians, and the ratio is also computed per repetition pair.

Start-up to the first step is split with the run's phase events
(events.jsonl) and the bare script's marks.

    .venv/bin/python benchmarks/bench_trainer_overhead.py [--quick] [--reps N] [--sizes tiny,medium]
    .venv/bin/python benchmarks/bench_trainer_overhead.py --diagnose   # which part costs what
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET_RATIO = 0.99
BATCH = 4
TRAIN_PAIRS = 320  # assets/preferences/train.jsonl

# size -> (orpo overrides, steps, warm-up steps dropped)
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"orpo": {"max_length": 64, "max_prompt_length": 32, "max_completion_length": 32},
             "steps": 150, "warmup": 10, "label": "tiny (shipped: hidden 64, 2 layers, 64 tokens)"},
    "medium": {"orpo": {"max_length": 512, "max_prompt_length": 256, "max_completion_length": 256},
               "steps": 8, "warmup": 2, "label": "medium (hidden 256, 4 layers, 512 tokens)"},
}


def _preset(work: Path, size: str, steps: int) -> Path:
    spec = SIZES[size]
    model_dir = c.make_medium_model(work / "medium-qwen3") if size == "medium" else None
    epochs = max(1, math.ceil(steps * BATCH / TRAIN_PAIRS))
    orpo = {**spec["orpo"], "total_batch_size": BATCH, "num_train_epochs": epochs, "max_training_steps": steps}
    return c.write_preset(work / f"bench-{size}.toml", name=f"bench-{size}", model_dir=model_dir,
                          changes={"orpo": orpo, "output": {"save_steps": 0, "do_last_save": False}})


def _steady(stamps: list[float], warmup: int) -> dict[str, float]:
    """Steps/s from per-step stamps after warm-up: 1/median interval, and the plain mean."""
    s = stamps[warmup:]
    if len(s) < 3:
        return {"sps": math.nan, "sps_mean": math.nan}
    gaps = [b - a for a, b in zip(s, s[1:])]
    return {"sps": 1.0 / c.median(gaps), "sps_mean": (len(s) - 1) / (s[-1] - s[0])}


def run_bare(preset: Path, work: Path, warmup: int, *, idle_ray: bool = False, channel: bool = False
             ) -> dict[str, Any]:
    """The bare script; diagnostics: with an idle Ray head up, or with orpo-tui's channel and actor (no Ray)."""
    from orpo_tui import preset as presets
    from orpo_tui.job import resolve

    spec = resolve.resolved(presets.load(preset), work / "bare-run")
    spec_path = work / "bare-spec.json"
    spec_path.write_text(json.dumps(spec, default=str))
    out = work / "bare-out.json"
    out.unlink(missing_ok=True)
    extra: list[str] = []
    actor = None
    if idle_ray:
        c.start_head()
    if channel:
        actor, stop_client = _local_actor(work)
        extra = [actor.receiver.endpoint, actor.receiver.token]
    t0 = time.time()
    sampler = None
    try:
        with open(work / "bare.log", "w") as log:
            proc = subprocess.Popen([c.PY, str(Path(__file__).parent / "bare_orpo.py"), str(spec_path), str(out),
                                     *extra], cwd=c.REPO, env=c.bench_env(), stdout=log, stderr=subprocess.STDOUT)
            followed = {proc.pid: "trainer"}
            if channel:
                followed[os.getpid()] = "RunActor + client (in-process, no Ray)"
            if idle_ray:
                sid = _head_sid()
                sampler = c.CpuSampler(lambda: c.session_processes(sid, followed))
            else:
                sampler = c.CpuSampler(lambda: followed)
            rc = proc.wait()
    finally:
        if sampler is not None:
            sampler.stop()
        if idle_ray:
            c.stop_head()
        if actor is not None:
            stop_client()
            actor.receiver.close()
            actor.store.close()
    if rc != 0:
        raise RuntimeError(f"bare run failed (rc {rc}); see {work / 'bare.log'}")
    d = json.loads(out.read_text())
    m = d["marks"]
    steps = d["steps"]
    first = steps[0][1]
    return {
        **_steady([s[1] for s in steps], warmup),
        "cpu": _cpu(sampler, [s[1] for s in steps], warmup),
        "exec_ms": 1e3 * c.median([s[2] for s in steps[warmup:]]),
        "ray_start": math.nan,
        "to_code": m["imported"] - t0,
        "load": m["model"] - m["imported"],
        "prep": m["trainer"] - m["model"],
        "first_step": first - m["trainer"],
        "first_exec": steps[0][2],
        "to_first": first - t0,
    }


def _head_sid() -> int:
    """Session of orpo-tui's local head (started in its own session): its daemons and workers."""
    from orpo_tui.job import cluster

    return int(json.loads((cluster.home() / "ray" / "head.json").read_text())["pgid"])


def _cpu(sampler: Any, stamps: list[float], warmup: int) -> dict[str, float]:
    """CPU ms per training step of each followed component, over the steady-state window."""
    s = stamps[warmup:]
    if sampler is None or len(s) < 3:
        return {}
    used, wall = sampler.between(s[0], s[-1])
    steps = sum(1 for t in s if s[0] <= t <= s[-1]) - 1
    if wall <= 0 or steps <= 0:
        return {}
    rate = steps / (s[-1] - s[0])  # steps per wall second in the window
    return {label: 1e3 * cpu / wall / rate for label, cpu in used.items()}


def _local_actor(work: Path):
    """A RunActor without Ray, and a client thread long-polling it as `orpo-tui --no-ui` does."""
    import shutil
    import threading

    from orpo_tui.job.actor import RunActor

    run_dir = work / "local-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = {"preset_name": "bench", "model": {"pretrained_model_name_or_path": "tiny"},
            "accelerator": {"kind": "cpu", "type": "cpu", "count": 1}}
    actor = RunActor("bench", str(run_dir), spec, "name = 'bench'\n", {}, {}, "127.0.0.1")
    done = threading.Event()

    def client() -> None:
        cursors = (0, 0, 0)
        while not done.is_set():
            u = actor.poll(*cursors, timeout=0.5)
            cursors = (u.metric_cursor, u.log_cursor, u.event_cursor)

    th = threading.Thread(target=client, daemon=True)
    th.start()

    def stop() -> None:
        done.set()
        th.join(timeout=2)

    return actor, stop


def run_console(preset: Path, work: Path, warmup: int) -> dict[str, Any]:
    runs = work / "runs"
    _, ray_start = c.start_head()
    sampler = None
    try:
        t0 = time.time()
        with open(work / "console.log", "w") as log:
            proc = subprocess.Popen([c.PY, "-m", "orpo_tui", "--preset", str(preset), "--no-ui", "--runs-dir",
                                     str(runs)], cwd=c.REPO, env=c.bench_env(), stdout=log, stderr=subprocess.STDOUT)
            sid = _head_sid()
            sampler = c.CpuSampler(lambda: c.session_processes(sid, {proc.pid: "client (orpo-tui --no-ui)"}))
            rc = proc.wait()
    finally:
        if sampler is not None:
            sampler.stop()
        c.stop_head()
    if rc != 0:
        raise RuntimeError(f"orpo-tui run failed (rc {rc}); see {work / 'console.log'}")
    run_dir = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if r.get("mode") == "train"]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    phase = {e["phase"]: e["time"] for e in events if e.get("kind") == "phase"}
    state = {}
    for e in events:
        if e.get("kind") == "state":
            state.setdefault(e["state"], e["time"])
    first = recs[0]["time"]
    return {
        **_steady([r["time"] for r in recs], warmup),
        "cpu": _cpu(sampler, [r["time"] for r in recs], warmup),
        "exec_ms": 1e3 * c.median([r["metrics"].get("train/execution_time", math.nan) for r in recs[warmup:]]),
        "ray_start": ray_start,
        "to_actor": state["pending"] - t0,
        "to_code": phase["loading tokenizer"] - t0,
        "load": phase["loading dataset"] - phase["loading tokenizer"],
        "prep": phase["training"] - phase["loading dataset"],
        "first_step": first - phase["training"],
        "first_exec": recs[0]["metrics"].get("train/execution_time", math.nan),
        "to_first": first - t0,
    }


ARMS = {
    "bare": run_bare,
    "console": lambda *a: run_console(*a),
    # Diagnostics (--diagnose): which part of the console's set-up costs the trainer what.
    "bare + idle Ray head": lambda *a: run_bare(*a, idle_ray=True),
    "bare + channel & actor": lambda *a: run_bare(*a, channel=True),
}


def measure(sizes: list[str], reps: dict[str, int], steps_override: dict[str, int],
            arms: tuple[str, ...] = ("bare", "console")) -> dict[str, dict[str, list[dict]]]:
    results: dict[str, dict[str, list[dict]]] = {s: {a: [] for a in arms} for s in sizes}
    with c.private_home(), tempfile.TemporaryDirectory(prefix="orpo-bench-overhead-") as tmp:
        work = Path(tmp)
        presets = {s: _preset(work, s, steps_override.get(s, SIZES[s]["steps"])) for s in sizes}
        for rep in range(max(reps.values())):
            for size in sizes:
                if rep >= reps[size]:
                    continue
                order = list(arms)
                order = order[rep % len(order):] + order[:rep % len(order)]  # rotate: no arm always first
                for arm in order:
                    c.note(f"overhead: {size} {arm} (repetition {rep + 1}/{reps[size]})")
                    fn = ARMS[arm]
                    r = fn(presets[size], work, SIZES[size]["warmup"])
                    c.note(f"  {r['sps']:.3f} steps/s, first step after {r['to_first']:.1f} s")
                    results[size][arm].append(r)
    return results


def report(results: dict[str, dict[str, list[dict]]], reps: dict[str, int], steps: dict[str, int]
           ) -> dict[str, Any]:
    c.banner("Trainer overhead: orpo-tui --no-ui vs a bare in-process EasyDeL script")
    print(c.machine_line())
    print("repetitions per arm: " + ", ".join(f"{s} {n} ({steps[s]} steps, first {SIZES[s]['warmup']} dropped)"
                                            for s, n in reps.items())
          + f"; batch {BATCH}; arm order rotated each repetition; medians; spread = min..max over repetitions.\n")
    rows, summary = [], {}
    for size, arms in results.items():
        b = [r["sps"] for r in arms["bare"]]
        k = [r["sps"] for r in arms["console"]]
        ratio = c.median(k) / c.median(b)
        paired = c.median([x / y for x, y in zip(k, b)])
        summary[size] = {"ratio": ratio, "paired": paired, "bare_sps": c.median(b), "console_sps": c.median(k)}
        rows.append([SIZES[size]["label"], f"{c.median(b):.3f} ({c.spread(b)})", f"{c.median(k):.3f} ({c.spread(k)})",
                     f"{c.median([r['exec_ms'] for r in arms['bare']]):.1f} / "
                     f"{c.median([r['exec_ms'] for r in arms['console']]):.1f}",
                     f"{ratio:.3f}", f"{paired:.3f}", f">= {TARGET_RATIO}", c.verdict(ratio >= TARGET_RATIO)])
    print(c.table(["model", "bare steps/s", "console steps/s", "exec ms/step bare / console", "console/bare",
                   "paired median", "target", "verdict"], rows))
    print("\nsteps/s = 1 / median interval between logged steps after warm-up; exec = EasyDeL's "
          "train/execution_time (the jitted step alone).")
    extra = [a for a in next(iter(results.values())) if a not in ("bare", "console")]
    if extra:
        print("\nDiagnosis: each part of the console's set-up alone, against bare (medians):\n")
        rows = []
        for size, arms in results.items():
            base = c.median([r["sps"] for r in arms["bare"]])
            for arm in ("bare", *extra, "console"):
                sps = [r["sps"] for r in arms[arm]]
                rows.append([size, arm, f"{c.median(sps):.3f} ({c.spread(sps)})",
                             f"{c.median([r['exec_ms'] for r in arms[arm]]):.1f}", f"{c.median(sps) / base:.3f}"])
        print(c.table(["model", "arm", "steps/s", "exec ms/step", "vs bare"], rows))
        print("\nbare + idle Ray head: orpo-tui's local head up (GCS, raylet, dashboard agent, log monitor),\n"
              "no actor. bare + channel & actor: the trainer-side Reporter (output tee, one message a\n"
              "log_metrics, token counts, stop checks) into a RunActor in the benchmark process with a\n"
              "client long-polling it; no Ray.")

    print("\nCPU per training step, steady state (ms of CPU, all threads; medians over repetitions):\n")
    rows = []
    for size, arms in results.items():
        for arm, rs in arms.items():
            labels = sorted({k for r in rs for k in r.get("cpu", {})}, key=lambda k: (k != "trainer", k))
            if not labels:
                continue
            med = {k: c.median([r["cpu"].get(k, math.nan) for r in rs]) for k in labels}
            others = sum(v for k, v in med.items() if k != "trainer" and math.isfinite(v))
            rows.append([size, arm, med.get("trainer", math.nan), others,
                         "; ".join(f"{k} {v:.2f}" for k, v in med.items() if k != "trainer") or "-"])
            summary[size].setdefault("cpu_ms_per_step", {})[arm] = med
    print(c.table(["model", "arm", "trainer process", "everything else", "of which"], rows))
    print("\nA 2-core machine has 2,000 ms of CPU a second to share: what the console's other processes use\n"
          "is taken from the trainer when it wants both cores (XLA's CPU backend runs its ops on all cores).")

    print("\nStart-up to the first logged step (seconds, medians):\n")
    rows = []
    for size, arms in results.items():
        for arm in ("bare", "console"):
            rs = arms[arm]
            med = {key: c.median([r.get(key, math.nan) for r in rs]) for key in
                   ("ray_start", "to_actor", "to_code", "load", "prep", "first_step", "first_exec", "to_first")}
            rows.append([size, arm, med["ray_start"], med["to_actor"], med["to_code"], med["load"], med["prep"],
                         med["first_step"], med["first_exec"], med["to_first"],
                         med["to_first"] + (0 if math.isnan(med["ray_start"]) else med["ray_start"])])
            summary[size][f"{arm}_startup"] = med
    print(c.table(["model", "arm", "Ray start (cold head)", "CLI+connect+actor", "to trainer code",
                   "tokenizer+model load", "dataset+trainer prep", "compile+first step", "(first exec)",
                   "to first step", "incl. Ray start"], rows))
    print("\nto trainer code: bare = interpreter + imports; console = CLI, Ray connect, RunActor, eformer launch,\n"
          "worker fork, imports (the difference to bare is orpo-tui's). compile+first step: from the trainer\n"
          "being built to the first logged step; (first exec) is EasyDeL's train/execution_time of step 1.")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model only, 1 repetition")
    p.add_argument("--reps", type=int, help="repetitions per arm, tiny model (default 3; --quick 1)")
    p.add_argument("--medium-reps", type=int, help="repetitions per arm, medium model (default 2)")
    p.add_argument("--sizes", default=None, help="comma-separated: tiny,medium")
    p.add_argument("--tiny-steps", type=int, help=f"default {SIZES['tiny']['steps']}")
    p.add_argument("--medium-steps", type=int, help=f"default {SIZES['medium']['steps']}")
    p.add_argument("--diagnose", action="store_true",
                   help="also bare + idle Ray head and bare + channel & actor (tiny model unless --sizes)")
    args = p.parse_args(argv)
    sizes = (args.sizes or ("tiny" if args.quick or args.diagnose else "tiny,medium")).split(",")
    reps = {s: (args.reps or (1 if args.quick else 3)) if s == "tiny" else (args.medium_reps or args.reps or
                                                                               (1 if args.quick else 2))
            for s in sizes}
    steps = {k: v for k, v in (("tiny", args.tiny_steps), ("medium", args.medium_steps)) if v}
    arms = tuple(ARMS) if args.diagnose else ("bare", "console")
    return report(measure(sizes, reps, steps, arms), reps, {s: steps.get(s, SIZES[s]["steps"]) for s in sizes})


if __name__ == "__main__":
    main(sys.argv[1:])
