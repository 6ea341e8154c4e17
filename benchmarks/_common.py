"""Shared helpers of the benchmarks: machine facts, medians, tables, presets, a private Ray head.

Not a benchmark itself. Every bench_<name>.py imports this (benchmarks/ is put
on sys.path by the script being run).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY_PRESET = REPO / "presets" / "tiny-cpu.toml"
TINY_MODEL = REPO / "assets" / "tiny-qwen3"
PREFERENCES = REPO / "assets" / "preferences"
ROOT_ENV = "ORPO_BENCH_ROOT"  # set by run_all.py: where private homes are made

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------ statistics

def median(xs: Sequence[float]) -> float:
    xs = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return statistics.median(xs) if xs else math.nan


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); no interpolation, so p99 is a real sample."""
    xs = sorted(x for x in xs if math.isfinite(x))
    if not xs:
        return math.nan
    k = max(0, min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1))
    return xs[k]


def spread(xs: Sequence[float]) -> str:
    """min..max of the repetitions, for the reader to judge the noise."""
    xs = [x for x in xs if math.isfinite(x)]
    return f"{min(xs):.3g}..{max(xs):.3g}" if xs else "-"


# ------------------------------------------------------------------ tables

def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, columns sized to fit (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _cell(c: Any) -> str:
    if isinstance(c, float):
        if not math.isfinite(c):
            return "-"
        return f"{c:.3g}" if abs(c) < 100 else f"{c:,.0f}"
    return str(c)


def banner(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def note(msg: str) -> None:
    """Progress to stderr, so stdout stays the tables."""
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ machine

def machine() -> dict[str, str]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {"nproc": str(os.cpu_count()), "cpu": model, "ram": ram, "python": platform.python_version(),
            "load": load}


def machine_line() -> str:
    m = machine()
    return f"machine: nproc {m['nproc']}, {m['cpu']}, {m['ram']} RAM, Python {m['python']}, load avg {m['load']}"


# ------------------------------------------------------------------ presets and assets

def write_preset(path: Path, *, name: str, model_dir: Path | None = None, changes: dict[str, dict[str, Any]]
                 | None = None) -> Path:
    """The shipped tiny preset with absolute asset paths and `changes` ({section: {key: value}})."""
    import tomli_w

    data = tomllib.loads(TINY_PRESET.read_text())
    data["name"] = name
    data["model"]["id"] = str(model_dir or TINY_MODEL)
    data["model"]["tokenizer"] = str(TINY_MODEL)
    data["dataset"]["data_files"] = {k: [str(PREFERENCES / Path(f).name) for f in v]
                                     for k, v in data["dataset"]["data_files"].items()}
    for section, values in (changes or {}).items():
        data.setdefault(section, {}).update(values)
    path.write_text(tomli_w.dumps(data))
    return path


MEDIUM = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
          "num_key_value_heads": 2, "head_dim": 64}


def make_medium_model(out: Path) -> Path:
    """A randomly initialised Qwen3 (hidden 256, 4 layers) in HF format, with the shipped tokenizer.

    Built the way assets/make_tiny_assets.py builds the tiny one (torch seed 0).
    Runs in a subprocess so this process never imports torch/transformers.
    """
    if (out / "model.safetensors").is_file():
        return out
    code = f"""
import json, shutil, torch
from pathlib import Path
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
out = Path({str(out)!r}); out.mkdir(parents=True, exist_ok=True)
tok = AutoTokenizer.from_pretrained({str(TINY_MODEL)!r})
tok.save_pretrained(str(out))
cfg = Qwen3Config(vocab_size=len(tok), max_position_embeddings=1024, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, bos_token_id=0, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id, **{MEDIUM!r})
torch.manual_seed(0)
Qwen3ForCausalLM(cfg).to(torch.float32).eval().save_pretrained(str(out), safe_serialization=True)
"""
    subprocess.run([PY, "-c", code], check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    return out


# ------------------------------------------------------------------ Ray

@contextlib.contextmanager
def private_home(prefix: str = "orpo-bench-") -> Iterator[Path]:
    """A private ORPO_TUI_HOME (own Ray head and token), as the tests use."""
    old = os.environ.get("ORPO_TUI_HOME")
    # Under run_all.py, homes live in its folder, so it can stop a head a crashed benchmark left.
    with tempfile.TemporaryDirectory(prefix=prefix, dir=os.environ.get(ROOT_ENV) or None) as home:
        os.environ["ORPO_TUI_HOME"] = home
        os.environ.setdefault("ORPO_TUI_ACTOR_LINGER_S", "60")
        from orpo_tui.job import cluster

        # Ray reads its auth mode once, at import: set it before anything imports ray.
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cluster.ensure_token())})
        try:
            yield Path(home)
        finally:
            if old is None:
                os.environ.pop("ORPO_TUI_HOME", None)
            else:
                os.environ["ORPO_TUI_HOME"] = old


def reap_heads(root: Path) -> list[str]:
    """Stop every orpo-tui Ray head still running under benchmark homes in `root`; returns their homes."""
    stopped = []
    for state in Path(root).glob("*/ray/head.json"):
        home = state.parent.parent
        subprocess.run([str(Path(PY).parent / "orpo-tui"), "stop-ray"], env={**os.environ, "ORPO_TUI_HOME": str(home)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        stopped.append(str(home))
    return stopped


def start_head() -> tuple[str, float]:
    """Start orpo-tui's local Ray head in the current ORPO_TUI_HOME; (address, seconds)."""
    from orpo_tui.job import cluster

    t0 = time.perf_counter()
    address = cluster.start_local_head()
    return address, time.perf_counter() - t0


def stop_head() -> None:
    from orpo_tui.job import cluster

    with contextlib.suppress(Exception):
        import ray

        if ray.is_initialized():
            ray.shutdown()
    cluster.stop_local_head()


def bench_env(**extra: str) -> dict[str, str]:
    """Environment of the measured subprocesses: offline, no W&B, no colour codes."""
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "JAX_PLATFORMS": "cpu"}
    env.update(extra)
    return env


# ------------------------------------------------------------------ CPU accounting

class CpuSampler:
    """Samples the CPU seconds of a set of processes every `interval` s, in a thread.

    `select()` returns {pid: label} for the processes to follow now (called at every
    sample, so processes that start later are picked up). `between(t0, t1)` gives the
    CPU seconds each label used between two wall-clock times, from the samples
    nearest inside that window; a process must be seen at both ends to count.
    """

    def __init__(self, select, interval: float = 0.5):
        import threading

        self.select = select
        self.interval = interval
        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            now = time.time()
            seen: dict[int, tuple[str, float]] = {}
            with contextlib.suppress(Exception):
                for pid, label in self.select().items():
                    with contextlib.suppress(psutil.Error):
                        t = psutil.Process(pid).cpu_times()
                        seen[pid] = (label, t.user + t.system)
            self.samples.append((now, seen))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def between(self, t0: float, t1: float) -> tuple[dict[str, float], float]:
        """({label: CPU seconds}, wall seconds) between the first sample >= t0 and the last <= t1."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}, 0.0
        (a_t, a), (b_t, b) = inside[0], inside[-1]
        out: dict[str, float] = {}
        for pid, (label, cpu) in b.items():
            if pid in a:
                out[label] = out.get(label, 0.0) + cpu - a[pid][1]
        return out, b_t - a_t


def session_processes(sid: int, extra: dict[int, str] | None = None) -> dict[int, str]:
    """{pid: label} of the processes in session `sid` (orpo-tui's Ray head and its workers), plus `extra`."""
    import psutil

    out = dict(extra or {})
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            if os.getsid(p.pid) != sid:
                continue
        except OSError:
            continue
        cmd = " ".join(p.info["cmdline"] or [p.info["name"] or ""])
        if "run_training" in cmd:
            label = "trainer"
        elif "RunActor" in cmd:
            label = "RunActor"
        else:
            label = "Ray head daemons, idle workers"
        out[p.pid] = label
    return out
