"""`orpo-tui`: the console, or the same engine headless.

    orpo-tui [--preset FILE]                    open the console
    orpo-tui --preset FILE --no-ui [--jsonl]    run headless, one line per step
    orpo-tui --preset FILE --dry-run            print what EasyDeL would receive
    orpo-tui runs                               list runs (from the run folders)
    orpo-tui attach RUN [--no-ui]               follow a run from any terminal
    orpo-tui resume RUN [--no-ui]               continue a stopped/failed run from its checkpoint
    orpo-tui preflight --preset FILE [--jsonl]  tokenized example, lengths, truncation, bad pairs
    orpo-tui export-script --preset FILE [-o F] the equivalent standalone EasyDeL + Ray script
    orpo-tui stop-ray                           stop the local Ray head orpo-tui started

Exit codes: 0 succeeded, 1 the run failed (or was stopped elsewhere),
2 bad preset or usage, 130 interrupted (a checkpoint was saved first).
Imports nothing heavy at start: Ray only when a run is launched, easydel
and jax never (they live in the training process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orpo-tui", description="ORPO fine-tuning console for EasyDeL on TPUs.")
    p.add_argument("command", nargs="?", choices=("runs", "attach", "resume", "preflight", "export-script", "stop-ray"),
                   help="runs: list runs; attach RUN: follow one; resume RUN: continue a stopped or failed "
                        "run from its checkpoint; preflight: check the dataset against the tokenizer and "
                        "lengths; export-script: write the equivalent standalone Python script; "
                        "stop-ray: stop the local Ray head orpo-tui started")
    p.add_argument("run_id", nargs="?", help="run id, with attach")
    p.add_argument("--preset", type=Path, help="preset TOML file to load")
    p.add_argument("--no-ui", action="store_true", help="run headless: one line per logged step")
    p.add_argument("--jsonl", action="store_true", help="headless: print metric records as JSON lines")
    p.add_argument("--dry-run", action="store_true", help="print the resolved EasyDeL arguments and exit")
    p.add_argument("--verbose", action="store_true", help="headless: echo the trainer's own output to stderr")
    p.add_argument("-o", "--output", type=Path, help="export-script: where to write the script (default stdout)")
    p.add_argument("--runs-dir", type=Path, help="where run folders live (default $ORPO_TUI_RUNS_DIR or ./runs)")
    p.add_argument("--ray-address", help="join this Ray cluster (default $RAY_ADDRESS, else a local head)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "runs":
            return cmd_runs(args)
        if args.command in ("preflight", "export-script"):
            if args.preset is None:
                print(f"orpo-tui: {args.command} needs --preset FILE", file=sys.stderr)
                return EXIT_USAGE
            if args.command == "preflight":
                from orpo_tui.preflight import run_cli
            else:
                from orpo_tui.export import run_cli
            return run_cli(args)
        if args.command == "stop-ray":
            from orpo_tui.job import cluster

            cluster.stop_local_head()
            print("local Ray head stopped (run folders are kept)")
            return EXIT_OK
        if args.command in ("attach", "resume"):
            if not args.run_id:
                print(f"orpo-tui: {args.command} needs a run id (see `orpo-tui runs`)", file=sys.stderr)
                return EXIT_USAGE
            return cmd_attach(args) if args.command == "attach" else cmd_resume(args)
        if args.dry_run or args.no_ui:
            if args.preset is None:
                print("orpo-tui: --no-ui and --dry-run need --preset FILE", file=sys.stderr)
                return EXIT_USAGE
            return cmd_dry_run(args) if args.dry_run else cmd_headless(args)
        return cmd_console(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _load(path: Path):
    from orpo_tui import preset as presets

    try:
        return presets.load(path), None
    except presets.PresetError as e:
        return None, str(e)


def _preflight_secrets(p, environ=os.environ) -> str | None:
    """A W&B run needs its key unless W&B is offline; say so before launching."""
    if p.logging.use_wandb and environ.get("WANDB_MODE", "") not in ("offline", "disabled") \
            and not environ.get(p.secrets.wandb_api_key_env):
        return (f"logging.use_wandb: is on but ${p.secrets.wandb_api_key_env} is not set "
                f"(export it, set WANDB_MODE=offline, or turn W&B off)")
    return None


def cmd_dry_run(args: argparse.Namespace) -> int:
    from orpo_tui.job import resolve

    p, err = _load(args.preset)
    if err:
        print(f"orpo-tui: {err}", file=sys.stderr)
        return EXIT_USAGE
    spec = resolve.resolved(p, (args.runs_dir or Path("runs")).resolve() / "<run-id>")
    if args.jsonl:
        print(json.dumps(spec, indent=1, default=str))
        return EXIT_OK
    print(f"# {p.name}: {p.description}" if p.description else f"# {p.name}")
    print(f"tokenizer = AutoTokenizer.from_pretrained({spec['tokenizer']!r})")
    print("model = AutoEasyDeLModelForCausalLM.from_pretrained(")
    for k, v in spec["model"].items():
        print(f"    {k}={_show(v)},")
    print(")")
    d = spec["dataset"]
    print(f"train_dataset = load_dataset({d['path']!r}, split={d['split']!r}"
          + (f", data_files={d['data_files']!r}" if d["data_files"] else "") + ")")
    if d["eval_split"]:
        print(f"eval_dataset = load_dataset({d['path']!r}, split={d['eval_split']!r})")
    elif d.get("eval_fraction"):
        print(f"held_out = train_dataset.train_test_split(test_size={d['eval_fraction']!r}, "
              f"seed={spec['orpo']['shuffle_seed_train']!r})")
        print("train_dataset, eval_dataset = held_out['train'], held_out['test']")
    print("arguments = ORPOConfig(")
    for k, v in spec["orpo"].items():
        print(f"    {k}={_show(v)},")
    print(")")
    a = spec["accelerator"]
    print(f"accelerator = {a['kind']} {a['type']} (runtime env vars: {sorted(spec['runtime_env']['env_vars'])})")
    print(f"secrets from ${p.secrets.hf_token_env}, ${p.secrets.wandb_api_key_env} (values never written)")
    return EXIT_OK


def _show(value: Any) -> str:
    """Python-like text; EasyDeL enum and dtype names unquoted."""
    if isinstance(value, str) and value.split(".")[0] in (
            "jnp", "jax", "torch", "EasyDeLOptimizers", "EasyDeLSchedulers", "AttentionMechanisms",
            "EasyDeLGradientCheckPointers"):
        return value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def cmd_headless(args: argparse.Namespace) -> int:
    p, err = _load(args.preset)
    if err:
        print(f"orpo-tui: {err}", file=sys.stderr)
        return EXIT_USAGE
    err = _preflight_secrets(p)
    if err:
        print(f"orpo-tui: {args.preset}: {err}", file=sys.stderr)
        return EXIT_USAGE
    from orpo_tui.job.client import RunClient
    from orpo_tui.job.cluster import ClusterError

    client = RunClient(args.runs_dir, args.ray_address)
    try:
        handle = client.launch(p)
    except ClusterError as e:
        print(f"orpo-tui: {e}", file=sys.stderr)
        return EXIT_FAILED
    info = sys.stderr if args.jsonl else sys.stdout
    print(f"run {handle.run_id}: {p.name} on {p.accelerator.type} -> {handle.run_dir}", file=info, flush=True)
    return follow(handle, jsonl=args.jsonl, verbose=args.verbose)


def cmd_attach(args: argparse.Namespace) -> int:
    from orpo_tui.job.client import RunClient
    from orpo_tui.job.cluster import ClusterError

    try:
        handle = RunClient(args.runs_dir, args.ray_address).attach(args.run_id)
    except KeyError as e:
        print(f"orpo-tui: {e.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as e:
        print(f"orpo-tui: {e}", file=sys.stderr)
        return EXIT_FAILED
    if not args.no_ui:
        from orpo_tui.ui.app import make_app

        make_app(attach_run=handle, client_factory=_client_factory(args)).run()
        return EXIT_OK
    return follow(handle, jsonl=args.jsonl, verbose=args.verbose, own_run=False)


def cmd_resume(args: argparse.Namespace) -> int:
    from orpo_tui import preset as presets
    from orpo_tui.job.client import RunClient
    from orpo_tui.job.cluster import ClusterError

    try:
        handle = RunClient(args.runs_dir, args.ray_address).resume(args.run_id)
    except (KeyError, presets.PresetError) as e:
        print(f"orpo-tui: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as e:
        print(f"orpo-tui: {e}", file=sys.stderr)
        return EXIT_FAILED
    info = sys.stderr if args.jsonl else sys.stdout
    print(f"run {handle.run_id}: resuming -> {handle.run_dir}", file=info, flush=True)
    if not args.no_ui:
        from orpo_tui.ui.app import make_app

        make_app(attach_run=handle, client_factory=_client_factory(args)).run()
        return EXIT_OK
    return follow(handle, jsonl=args.jsonl, verbose=args.verbose)


def cmd_runs(args: argparse.Namespace) -> int:
    from orpo_tui.job.client import RunClient

    runs = RunClient(args.runs_dir).list_runs()
    if not runs:
        print(f"no runs in {RunClient(args.runs_dir).runs_dir}")
        return EXIT_OK
    print(f"{'RUN':<40} {'STATE':<10} {'PRESET':<18} {'STEP':>11} {'LOSS':>8}  STARTED           DURATION")
    for r in runs:
        step = f"{r.step}/{r.total_steps or '?'}"
        loss = f"{r.last_loss:.4f}" if isinstance(r.last_loss, float) and math.isfinite(r.last_loss) else "-"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "-"
        dur = _hms((r.ended or time.time()) - r.started) if r.started else "-"
        print(f"{r.run_id:<40} {r.state:<10} {r.preset_name[:18]:<18} {step:>11} {loss:>8}  {started:<17} {dur}")
    return EXIT_OK


def _client_factory(args: argparse.Namespace):
    def client_factory():
        from orpo_tui.job.client import RunClient

        return RunClient(args.runs_dir, args.ray_address)

    return client_factory


def cmd_console(args: argparse.Namespace) -> int:
    if args.preset is not None:
        _, err = _load(args.preset)
        if err:
            print(f"orpo-tui: {err}", file=sys.stderr)
            return EXIT_USAGE
    from orpo_tui.job import store
    from orpo_tui.ui.app import make_app

    # With no preset named, a console over existing runs most likely came back for them.
    runs_dir = args.runs_dir.resolve() if args.runs_dir else store.default_runs_dir()
    open_runs = args.preset is None and bool(store.list_run_dirs(runs_dir))
    make_app(args.preset, client_factory=_client_factory(args), open_runs=open_runs).run()
    return EXIT_OK


# ---------------------------------------------------------------- headless output

def follow(handle: Any, *, jsonl: bool = False, verbose: bool = False, own_run: bool = True,
           out: TextIO = sys.stdout) -> int:
    """Stream a run to the terminal until it ends; Ctrl-C stops it gracefully."""
    from orpo_tui.job.records import FAILED, SUCCEEDED

    interrupted = False
    info_out = sys.stderr if jsonl else out

    def on_sigint(signum, frame):
        nonlocal interrupted
        if interrupted:  # second Ctrl-C: leave the run alone and go
            raise KeyboardInterrupt
        interrupted = True
        print("\ninterrupted: stopping the run (saving a checkpoint first); Ctrl-C again to detach",
              file=info_out, flush=True)
        handle.stop()

    previous = signal.signal(signal.SIGINT, on_sigint)
    last = None
    try:
        while True:
            update = handle.poll(0.5)
            # In time order, so an alert follows the step it is about (a record sorts before the
            # events stamped with its own time).
            items = sorted([(rec.time, 0, rec) for rec in update.metrics]
                           + [(float(e.get("time") or 0.0), 1, e) for e in update.events],
                           key=lambda item: item[:2])
            for _, is_event, item in items:
                if is_event:
                    line = format_event(item, handle.run_dir)
                    if line:
                        print(line, file=info_out)
                elif jsonl:
                    out.write(json.dumps(item.to_json()) + "\n")
                else:
                    out.write(format_step(item, update.info.total_steps) + "\n")
            if verbose:
                for line in update.logs:
                    print(line, file=sys.stderr)
            out.flush()
            last = update.info
            if update.done:
                break
    except KeyboardInterrupt:
        print(f"detached: the run goes on; follow it with `orpo-tui attach {handle.run_id}`", file=info_out)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
    print(format_summary(last), file=info_out, flush=True)
    if own_run:
        handle.release()
    if last.state == SUCCEEDED:
        return EXIT_OK
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if last.state in (FAILED, "stopped") else EXIT_OK


def _fmt(x: float, spec: str = ".4f") -> str:
    return format(x, spec) if isinstance(x, float) and math.isfinite(x) else "-"


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_step(rec: Any, total: int) -> str:
    """One headless line for a logged step; a logged NaN/Inf shows as nan/inf, a missing value as -."""
    def g(name: str, spec: str = ".4f") -> str:
        value = rec.get(name, None)
        if value is None and rec.mode != "train":  # EasyDeL's ORPO loss names its eval metrics eval/eval_<name>
            value = rec.get(f"{rec.mode}_{name}", None)
        if value is None:
            return "-"
        return format(value, spec) if math.isfinite(value) else str(value)

    logps = f"logp c/r {g('logps/chosen', '.3f')}/{g('logps/rejected', '.3f')}"
    if rec.mode != "train":
        return (f"eval  @{rec.step:>6}  loss {g('loss')}  nll {g('nll_loss')}  "
                f"log-odds {g('log_odds_ratio')}  {logps}  acc {g('rewards/accuracies', '.2f')}")
    width = len(str(total)) if total else 4
    mfu = rec.derived.get("mfu")
    return (f"step {rec.step:>{width}}/{total or '?'}  loss {g('loss')}  nll {g('nll_loss')}  "
            f"log-odds {g('log_odds_ratio')}  {logps}  acc {g('rewards/accuracies', '.2f')}  "
            f"tok/s {_fmt(rec.derived.get('real_tokens_per_s', math.nan), ',.0f')}  "
            + (f"mfu {_fmt(float(mfu), '.1%')}  " if isinstance(mfu, (int, float)) else "")
            + f"eta {_hms(rec.derived.get('eta_s', math.nan))}")


def format_event(event: dict[str, Any], run_dir: Path) -> str | None:
    kind = event.get("kind")
    if kind == "phase":
        return f"· {event.get('phase')}"
    if kind == "state":
        return f"· state: {event.get('state')}"
    if kind == "error":
        return f"error: {event.get('message')}  (traceback in {Path(run_dir) / 'events.jsonl'})"
    if kind == "resumed":
        return f"· resumed from the checkpoint at step {event.get('step')}"
    if kind == "configured":
        evals = f", {event['eval_examples']} eval pairs" if event.get("eval_examples") else ""
        return f"· {event.get('train_examples')} training pairs{evals}, {event.get('total_steps')} steps"
    if kind == "alert":
        return f"alert: {event.get('message')}"
    if kind == "stop":
        return f"· stopping (checkpoint first): {event.get('reason')}"
    return None


def format_summary(info: Any) -> str:
    dur = _hms((info.ended or time.time()) - info.started) if info.started else "-"
    parts = [f"{info.state}: step {info.step}/{info.total_steps or '?'}", f"final loss {_fmt(info.last_loss)}",
             f"in {dur}"]
    if info.checkpoint:
        parts.append(f"checkpoint {info.checkpoint}")
    if info.error:
        parts.append(f"error: {info.error}")
    parts.append(f"run folder {info.run_dir}")
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
