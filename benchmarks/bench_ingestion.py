"""Ingestion: sustained metric events/s from the trainer's Reporter to a client's poll.

A sender process plays the trainer: a real `channel.Reporter` sending N
`log_metrics` calls as fast as it can (each a real EasyDeL metric dict of a
tiny run, with per-parameter grad norms the Reporter filters out). They go
over the zmq channel into a `RunActor` (Receiver thread, `_on_message`,
metrics.jsonl, in-memory history) and out through `poll` to a client:

- in-process: the RunActor instantiated without Ray; a client thread calls
  `actor.poll(...)` with cursors, as the Ray method would;
- through Ray: the RunActor as a real Ray actor (private local head), the
  client a `RunHandle.poll()` in this process.

Rates are N / (first send .. last record in the client's hands). "with logs"
also sends the trainer's one progress line per step, as a real run does.
A single-thread profile of the actor's per-message path follows the table.

    .venv/bin/python benchmarks/bench_ingestion.py [--quick] [--n N] [--no-ray] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET_RATE = 20_000.0

# One real `log_metrics` dict of the shipped tiny run (step 20), as EasyDeL passes it.
METRICS: dict[str, float] = {
    "train/epoch": 0.2564102564102564, "train/epoch_index": 0.0, "train/execution_time": 0.01910838,
    "train/learning_rate": 0.000999605399556458, "train/loss": 4.922137260437012,
    "train/perplexity": 137.2957305908203, "train/train_step": 20.0, "train/train_step_time": 0.01959991455078125,
    "train/tflops": 0.006235273947869991, "train/visited_tokens": 5120.0, "train/mean_loss": 5.53978328704834,
    "train/log_odds_chosen": 0.13379277288913727, "train/log_odds_ratio": -0.6347103714942932,
    "train/logits/chosen": -311.1716003417969, "train/logits/rejected": -312.73687744140625,
    "train/logps/chosen": -5.055150985717773, "train/logps/rejected": -5.188129901885986,
    "train/nll_accuracy": 0.42105263471603394, "train/nll_loss": 4.85866641998291, "train/rewards/accuracies": 0.5,
    "train/rewards/chosen": -0.5055150985717773, "train/rewards/margins": 0.013297917321324348,
    "train/rewards/rejected": -0.5188130140304565, "train/train/max_grad_norm": 1.9766556024551392,
    "train/train/mean_grad_norm": 0.25967419147491455, "train-mlperf/execution_time": 0.01910838,
    "train-mlperf/flops": 29786496.0, "train-mlperf/flops_per_token": 465414.0, "train-mlperf/extra_flops": 0.0,
    "train-mlperf/extra_flops_per_token": 0.0, "train-mlperf/step_time": 0.01959991455078125,
    "train-mlperf/tflops": 0.006235273947869991, "train-mlperf/throughput": 13397.263399618387,
    "train-mlperf/total_flops": 119145984.0, "train-mlperf/total_time": 2.0736427307128906,
    "train-mlperf/total_tokens": 256.0,
}
GRAD_NORMS = {f"train/grad_norm/model/layers/{i}/{p}/kernel": 0.1 * (i + 1)
              for i in range(2) for p in ("self_attn/q_proj", "self_attn/k_proj", "self_attn/v_proj",
                                          "self_attn/o_proj", "mlp/gate_proj", "mlp/up_proj", "mlp/down_proj")}
LOG_LINE = "(20:25:03 TrainerMetrics) " + repr({k.split("/", 1)[1]: round(v, 3) for k, v in METRICS.items()})


def _sender(endpoint: str, token: str, n: int, with_logs: bool) -> None:
    """The trainer's side, in its own process (as in a real run)."""
    from orpo_tui.job.channel import Reporter

    rep = Reporter(endpoint, token)
    rep.event("configured", total_steps=n, train_examples=n, eval_examples=0)
    raw = {**METRICS, **GRAD_NORMS}
    t0 = time.time()
    for i in range(1, n + 1):
        rep.count_tokens((198, 512))
        raw["train/train_step"] = float(i)
        rep.metric(i, "train", raw)
        if with_logs:
            rep.log(LOG_LINE)
    sent = time.time()
    rep.close()
    print(json.dumps({"t0": t0, "sent": sent}), flush=True)


def _spawn_sender(endpoint: str, token: str, n: int, with_logs: bool) -> subprocess.Popen:
    return subprocess.Popen([c.PY, __file__, "--send", endpoint, token, str(n), "1" if with_logs else "0"],
                            cwd=c.REPO, stdout=subprocess.PIPE, text=True)


def _actor_args(run_dir: Path) -> tuple:
    spec = {"preset_name": "bench-ingest", "model": {"pretrained_model_name_or_path": "tiny"},
            "accelerator": {"kind": "cpu", "type": "cpu", "count": 1}}
    return ("bench-ingest", str(run_dir), spec, "name = 'bench-ingest'\n", {}, {}, "127.0.0.1")


def run_in_process(n: int, with_logs: bool) -> dict[str, float]:
    from orpo_tui.job.actor import RunActor

    with tempfile.TemporaryDirectory(prefix="orpo-bench-ingest-") as tmp:
        actor = RunActor(*_actor_args(Path(tmp) / "run"))
        stored = {"last": 0.0}
        on_message = actor._on_message

        def counting(msg: dict[str, Any]) -> None:
            on_message(msg)
            stored["last"] = time.time()

        actor.receiver.on_message = counting
        got = {"n": 0, "done": 0.0}

        def client() -> None:
            cursors = (0, 0, 0)
            deadline = time.monotonic() + 300
            while got["n"] < n and time.monotonic() < deadline:
                u = actor.poll(*cursors, timeout=0.5)
                cursors = (u.metric_cursor, u.log_cursor, u.event_cursor)
                got["n"] += len(u.metrics)
            got["done"] = time.time()

        th = threading.Thread(target=client, daemon=True)
        th.start()
        sender = _spawn_sender(actor.receiver.endpoint, actor.receiver.token, n, with_logs)
        out, _ = sender.communicate(timeout=600)
        th.join(timeout=600)
        actor.receiver.close()
        actor.store.close()
        on_disk = sum(1 for _ in open(Path(tmp) / "run" / "metrics.jsonl"))
    s = json.loads(out.strip().splitlines()[-1])
    return {"sent_rate": n / (s["sent"] - s["t0"]), "stored_rate": n / (stored["last"] - s["t0"]),
            "client_rate": n / (got["done"] - s["t0"]), "received": got["n"], "on_disk": on_disk}


def run_through_ray(n: int, with_logs: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="orpo-bench-ingest-") as tmp:
        c.start_head()
        try:
            from orpo_tui.job import cluster
            from orpo_tui.job.actor import NAMESPACE, RunActor
            from orpo_tui.job.client import RunHandle

            cluster.connect()
            import ray

            actor = ray.remote(RunActor).options(
                name="run-bench-ingest", namespace=NAMESPACE, num_cpus=0, max_concurrency=64,
                resources={"node:__internal_head__": 0.001}).remote(*_actor_args(Path(tmp) / "run"))
            endpoint = ray.get(actor.endpoint.remote())
            token = ray.get(actor.__ray_call__.remote(lambda self: self.receiver.token))
            handle = RunHandle("bench-ingest", Path(tmp) / "run", actor)
            handle.poll(0.01)
            sender = _spawn_sender(endpoint, token, n, with_logs)
            got, polls = 0, 0
            deadline = time.monotonic() + 300
            while got < n and time.monotonic() < deadline:
                got += len(handle.poll(0.5).metrics)
                polls += 1
            done = time.time()
            out, _ = sender.communicate(timeout=600)
            ray.kill(actor)
        finally:
            c.stop_head()
    s = json.loads(out.strip().splitlines()[-1])
    return {"sent_rate": n / (s["sent"] - s["t0"]), "stored_rate": float("nan"),
            "client_rate": n / (done - s["t0"]), "received": got, "on_disk": float("nan"), "polls": polls}


def profile_actor_path(n: int) -> str:
    """cProfile of the actor's per-message work (decode + _on_message), single thread."""
    from orpo_tui.job.actor import RunActor
    from orpo_tui.job.channel import Reporter

    with tempfile.TemporaryDirectory(prefix="orpo-bench-ingest-") as tmp:
        actor = RunActor(*_actor_args(Path(tmp) / "run"))
        actor.receiver.close()
        rep = Reporter.__new__(Reporter)  # only to encode messages exactly as the Reporter does
        frames: list[bytes] = []
        rep._sock, rep._tokens, rep._step_started, rep.token = None, (198, 512), time.perf_counter(), "t" * 32
        rep._send = lambda msg: frames.append(json.dumps({**msg, "t": rep.token}, allow_nan=True).encode())
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            rep.metric(i, "train", {**METRICS, **GRAD_NORMS})
        encode_us = (time.perf_counter() - t0) / n * 1e6
        actor.receiver.token = rep.token
        decode, on_message = actor.receiver._decode, actor._on_message
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for f in frames:
            on_message(decode(f))
        prof.disable()
        actor_us = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        cursors, got = (0, 0, 0), 0
        while got < n:  # polls are paged
            u = actor.poll(*cursors, 0)
            cursors = (u.metric_cursor, u.log_cursor, u.event_cursor)
            got += len(u.metrics)
            if not u.metrics:
                break
        poll_us = (time.perf_counter() - t0) / n * 1e6
        actor.store.close()
    stats = pstats.Stats(prof)
    parts = {}
    for (path, _, func), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        for label, (fname, fpath) in {"decode (json)": ("_decode", "channel.py"),
                                      "health checks": ("observe", "health.py"),
                                      "metrics.jsonl (json + write + flush)": ("append_metric", "store.py"),
                                      "whole _on_message": ("_on_message", "actor.py")}.items():
            if func == fname and path.endswith(fpath):
                parts[label] = max(parts.get(label, 0.0), cum)
    breakdown = ", ".join(f"{k} {v / n * 1e6:.0f} us" for k, v in parts.items())
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()][3:]
    head = (f"per metric, single thread (profiler on for the actor part): Reporter encode {encode_us:.1f} us, "
            f"actor decode+_on_message {actor_us:.1f} us, poll copy-out {poll_us:.2f} us\n"
            f"inside the actor, per metric (cumulative, profiler on): {breakdown}")
    return head + "\n\n" + "\n".join("    " + ln for ln in lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer events, 1 repetition")
    p.add_argument("--n", type=int, help="metric events per repetition (default 30000; --quick 15000)")
    p.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    p.add_argument("--no-ray", action="store_true", help="skip the real-actor row")
    p.add_argument("--profile", action="store_true", help="always print the actor profile")
    p.add_argument("--send", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.send:
        _sender(args.send[0], args.send[1], int(args.send[2]), args.send[3] == "1")
        return {}
    n = args.n or (15_000 if args.quick else 30_000)
    reps = args.reps or (1 if args.quick else 3)
    cases = [("in-process actor, poll", False, run_in_process), ("in-process actor, poll, with logs", True,
                                                                 run_in_process)]
    if not args.no_ray:
        cases.append(("real Ray actor, RunHandle.poll", False, run_through_ray))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in cases}
    with c.private_home():  # before anything imports ray
        for rep in range(reps):
            for name, logs, fn in cases:
                c.note(f"ingestion: {name} ({rep + 1}/{reps}, {n:,} events)")
                results[name].append(fn(n, logs))
    c.banner("Ingestion: metric events/s, Reporter -> channel -> RunActor store -> client poll")
    print(c.machine_line())
    print(f"{n:,} metric events per repetition, {reps} repetition(s), medians.\n")
    rows, summary = [], {}
    for name, rs in results.items():
        rate = c.median([r["client_rate"] for r in rs])
        lost = n - min(r["received"] for r in rs)
        summary[name] = rate
        rows.append([name, f"{c.median([r['sent_rate'] for r in rs]):,.0f}",
                     f"{c.median([r['stored_rate'] for r in rs]):,.0f}", f"{rate:,.0f}", lost,
                     f">= {TARGET_RATE:,.0f}/s", c.verdict(rate >= TARGET_RATE and lost == 0)])
    print(c.table(["path", "sent/s (Reporter)", "stored/s (actor)", "in client's hands/s", "lost", "target",
                   "verdict"], rows))
    missed = any(v < TARGET_RATE for v in summary.values())
    if missed or args.profile:
        print("\nProfile of the actor's path (where a miss comes from):\n")
        print(profile_actor_path(min(n, 30_000)))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
