"""Full metric histories kept cheaply, and min/max views of them for plotting.

A run of a million steps must redraw as fast as one of a hundred. So every
plotted quantity keeps its whole history as float32 columns beside one float64
step axis (about 4 bytes a step a quantity), and a small min/max pyramid over
blocks of samples. A view of N points reads whole blocks from the pyramid level
whose block size is just under `samples / N`, so it touches O(N) numbers however
long the history is; appends only write the base arrays, and the pyramid is
brought up to date (from the first changed block) when a view is asked for.

No textual here: headless mode and the benchmarks use this module as is.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# --- where each quantity comes from -----------------------------------------------------
#
# The one table to fix when EasyDeL renames a metric. Each quantity lists its sources in
# order of preference; "{m}" is the record's mode ("train" or "eval"), and "derived:x"
# reads `MetricRecord.derived["x"]` (what orpo-tui computes beside EasyDeL's numbers).
# A source "{m}/x" also matches "{m}/{m}_x" and "{m}_x": EasyDeL's ORPO loss function
# prefixes its own metrics with "eval_" in eval mode (eval/eval_nll_loss).
METRIC_SOURCES: dict[str, tuple[str, ...]] = {
    "loss": ("{m}/loss", "{m}/mean_loss"),
    "nll_loss": ("{m}/nll_loss",),
    "log_odds_ratio": ("{m}/log_odds_ratio",),
    "log_odds_chosen": ("{m}/log_odds_chosen",),
    "logps_chosen": ("{m}/logps/chosen",),
    "logps_rejected": ("{m}/logps/rejected",),
    "reward_margin": ("{m}/rewards/margins",),
    "reward_accuracy": ("{m}/rewards/accuracies",),
    "real_tokens_per_s": ("derived:real_tokens_per_s",),
    "padded_tokens_per_s": ("derived:padded_tokens_per_s", "{m}-mlperf/throughput"),
    "step_time": ("derived:step_time_s", "{m}/step_time", "{m}-mlperf/step_time"),
    # EasyDeL's tflops is the whole batch's FLOPs over the step time: all chips together,
    # but one sequence per pair; the engine's MFU (job/actor.py) counts both sequences.
    "tflops": ("{m}/tflops", "{m}-mlperf/tflops"),
    "mfu": ("derived:mfu",),
    "epoch": ("{m}/epoch",),
    "learning_rate": ("{m}/learning_rate",),
}

#: Quantities kept as full histories (the plotted ones); the rest keep only their latest value.
COLUMNS: tuple[str, ...] = (
    "loss", "nll_loss", "odds_ratio_loss",
    "logps_chosen", "logps_rejected", "log_odds_ratio", "log_odds_chosen",
    "reward_margin", "reward_accuracy",
    "real_tokens_per_s", "padded_tokens_per_s", "step_time", "tflops",
)
#: Quantities kept only as their latest value.
SCALARS: tuple[str, ...] = ("epoch", "learning_rate")
#: Quantities computed here from others (not looked up in records).
COMPUTED = frozenset({"odds_ratio_loss"})

NAN = math.nan


def _candidates(source: str, mode: str) -> list[tuple[str, str]]:
    """(where, key) pairs for one source spec: where is "metrics" or "derived"."""
    if source.startswith("derived:"):
        return [("derived", source.removeprefix("derived:"))]
    key = source.format(m=mode)
    out = [("metrics", key)]
    prefix = f"{mode}/"
    if key.startswith(prefix):
        bare = key.removeprefix(prefix)
        out += [("metrics", f"{mode}/{mode}_{bare}"), ("metrics", f"{mode}_{bare}"),
                ("metrics", bare)]
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return NAN
    return float(value)


class MetricExtractor:
    """Reads the table's quantities out of records, resolving names once per record shape.

    Looking up every source for every record would cost more than storing it; the key
    that matched is cached per mode and checked again only when a record lacks it.
    """

    def __init__(self, sources: Mapping[str, Sequence[str]] = METRIC_SOURCES):
        self.sources = dict(sources)
        self._resolved: dict[tuple[str, str], tuple[str, str] | None] = {}
        self._shape: dict[str, tuple[int, int]] = {}

    def _resolve(self, name: str, mode: str, metrics: Mapping, derived: Mapping) -> tuple[str, str] | None:
        for source in self.sources.get(name, ()):
            for where, key in _candidates(source, mode):
                if key in (metrics if where == "metrics" else derived):
                    return where, key
        return None

    def extract(self, mode: str, metrics: Mapping[str, Any], derived: Mapping[str, Any],
                names: Iterable[str]) -> list[float]:
        """The named quantities of one record, NaN where a record lacks one."""
        shape = (len(metrics), len(derived))
        if self._shape.get(mode) != shape:
            # Another set of keys: resolve afresh (absent names may have appeared).
            self._shape[mode] = shape
            for name in self.sources:
                self._resolved.pop((name, mode), None)
        out = []
        resolved = self._resolved
        for name in names:
            hit = resolved.get((name, mode), False)
            if hit is False:
                hit = resolved[(name, mode)] = self._resolve(name, mode, metrics, derived)
            if hit is None:
                out.append(NAN)
                continue
            where, key = hit
            table = metrics if where == "metrics" else derived
            if key in table:
                out.append(_number(table[key]))
            else:
                hit = resolved[(name, mode)] = self._resolve(name, mode, metrics, derived)
                out.append(NAN if hit is None else
                           _number((metrics if hit[0] == "metrics" else derived)[hit[1]]))
        return out


# --- history ------------------------------------------------------------------------------

#: Samples per block of the pyramid's finest level, and the factor between levels. A base
#: of 16 keeps the pyramid at about a sixth of the base arrays' size.
BLOCK = 16
FANOUT = 4
#: Samples per segment of value storage: a multiple of every pyramid block that must not
#: straddle two segments (BLOCK).
SEGMENT = 1 << 16
#: Steps are whole numbers; int32 holds two billion of them in half the bytes of int64.
STEP_DTYPE = np.int32
#: Capacity growth factor: amortised O(1) appends with at most 1.5x slack.
GROWTH = 1.5


@dataclass(frozen=True)
class View:
    """A downsampled stretch of one column: bucket j spans steps x0[j]..x1[j] with values lo..hi."""

    x0: np.ndarray
    x1: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __len__(self) -> int:
        return len(self.x0)

    @property
    def x(self) -> np.ndarray:
        return (self.x0 + self.x1) * 0.5


class History:
    """Several float32 columns over one step axis, with min/max views of any size.

    Values live in fixed-size segments, so growing never copies them (and never needs
    old and new storage at once); the step axis and the pyramid, a fraction of the
    size, grow geometrically. Columns hold NaN where a record lacked the quantity;
    views ignore NaN.
    """

    def __init__(self, columns: Sequence[str], capacity: int = 1024):
        self.columns = tuple(columns)
        self._col = {name: i for i, name in enumerate(self.columns)}
        capacity = max(int(capacity), BLOCK)
        # np.empty, not np.full: capacity not yet written costs address space, not memory
        # (untouched pages are not resident), so growth slack is free. Nothing past
        # `len(self)` is ever read.
        self._steps = np.empty(capacity, STEP_DTYPE)
        self._segments: list[np.ndarray] = []
        self._n = 0
        # Pyramid levels: (block size, mins, maxs) with mins/maxs shaped (columns, blocks).
        self._levels: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._clean = 0  # samples already folded into the pyramid
        #: Bumped on every append, so views and widgets can tell when to redraw.
        self.version = 0
        #: Growth bookkeeping, for tests of the amortised cost: reallocations that copied,
        #: and the samples (or blocks) they copied. Adding a value segment copies nothing.
        self.grow_count = 0
        self.copied = 0

    # -- appending --

    def __len__(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        return min(len(self._steps), len(self._segments) * SEGMENT)

    def _reserve(self, needed: int) -> None:
        while len(self._segments) * SEGMENT < needed:
            self._segments.append(np.empty((len(self.columns), SEGMENT), np.float32))
        cap = len(self._steps)
        if needed <= cap:
            return
        new_cap = max(needed, int(cap * GROWTH) + 1)
        steps = np.empty(new_cap, STEP_DTYPE)
        steps[: self._n] = self._steps[: self._n]
        self._steps = steps
        self.grow_count += 1
        self.copied += self._n
        # What was folded into the levels stays valid at their new sizes.
        self._levels = [(b, *self._grown(mins, maxs, b)) for b, mins, maxs in self._levels]

    def _grown(self, mins: np.ndarray, maxs: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
        blocks = -(-len(self._steps) // block)
        new_min = np.empty((len(self.columns), blocks), np.float32)
        new_max = np.empty((len(self.columns), blocks), np.float32)
        used = min(mins.shape[1], blocks)
        new_min[:, :used] = mins[:, :used]
        new_max[:, :used] = maxs[:, :used]
        self.copied += used
        return new_min, new_max

    def _write(self, at: int, rows_t: np.ndarray) -> None:
        """Store columns-by-samples `rows_t` from sample `at` on, across segments."""
        k = rows_t.shape[1]
        done = 0
        while done < k:
            seg, off = divmod(at + done, SEGMENT)
            take = min(k - done, SEGMENT - off)
            self._segments[seg][:, off: off + take] = rows_t[:, done: done + take]
            done += take

    def append(self, step: float, values: Mapping[str, float] | Sequence[float]) -> None:
        """One sample: values by column name (missing ones NaN) or in column order."""
        self._reserve(self._n + 1)
        i = self._n
        self._steps[i] = step
        seg, off = divmod(i, SEGMENT)
        column = self._segments[seg][:, off]
        if isinstance(values, Mapping):
            column[:] = np.nan
            for name, v in values.items():
                j = self._col.get(name)
                if j is not None:
                    column[j] = v
        else:
            column[:] = values
        self._n = i + 1
        self.version += 1

    def extend(self, steps: Sequence[float] | np.ndarray,
               rows: np.ndarray | Sequence[Sequence[float]]) -> None:
        """Many samples at once: `rows` is (samples, columns) in column order."""
        steps = np.asarray(steps, STEP_DTYPE)
        k = len(steps)
        if k == 0:
            return
        rows = np.asarray(rows, np.float32).reshape(k, len(self.columns))
        self._reserve(self._n + k)
        self._steps[self._n: self._n + k] = steps
        self._write(self._n, rows.T)
        self._n += k
        self.version += 1

    # -- reading --

    def _raw(self, row: int | slice, start: int, stop: int) -> np.ndarray:
        """Stored values of `row` over samples [start, stop) (a copy when it spans segments)."""
        pieces = []
        at = start
        while at < stop:
            seg, off = divmod(at, SEGMENT)
            take = min(stop - at, SEGMENT - off)
            pieces.append(self._segments[seg][row, off: off + take])
            at += take
        if not pieces:
            return np.empty((len(self.columns), 0) if isinstance(row, slice) else 0, np.float32)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=-1)

    @property
    def steps(self) -> np.ndarray:
        """The step axis (a read-only view)."""
        v = self._steps[: self._n]
        v.flags.writeable = False
        return v

    def column(self, name: str) -> np.ndarray:
        """One column's whole history (a copy: O(n), for tests and exports, not drawing)."""
        return np.array(self._raw(self._col[name], 0, self._n))

    def last(self, name: str) -> float:
        """The latest value of a column (NaN when empty or missing)."""
        if not self._n:
            return NAN
        seg, off = divmod(self._n - 1, SEGMENT)
        return float(self._segments[seg][self._col[name], off])

    @property
    def last_step(self) -> float:
        return float(self._steps[self._n - 1]) if self._n else NAN

    @property
    def nbytes(self) -> int:
        """Bytes held (allocated; the unwritten tail of the last segment is not resident)."""
        return (self._steps.nbytes + sum(seg.nbytes for seg in self._segments)
                + sum(a.nbytes + b.nbytes for _, a, b in self._levels))

    # -- pyramid --

    def _update_pyramid(self) -> None:
        n = self._n
        if self._clean == n:
            return
        first = self._clean
        if not self._levels:
            self._levels.append(self._new_level(BLOCK))
            first = 0
        existing = len(self._levels)
        while self._levels[-1][0] * FANOUT <= n:
            self._levels.append(self._new_level(self._levels[-1][0] * FANOUT))
        _, mins, maxs = self._levels[0]
        # Level 0 from the raw values, one segment at a time (blocks never straddle two).
        at = (first // BLOCK) * BLOCK
        while at < n:
            seg, off = divmod(at, SEGMENT)
            stop = min(n, (seg + 1) * SEGMENT)
            part = self._segments[seg][:, off: off + (stop - at)]
            b0 = at // BLOCK
            b1 = -(-stop // BLOCK)
            idx = np.arange(0, stop - at, BLOCK)
            with np.errstate(invalid="ignore"):
                mins[:, b0:b1] = np.fmin.reduceat(part, idx, axis=1)
                maxs[:, b0:b1] = np.fmax.reduceat(part, idx, axis=1)
            at = stop
        for li in range(1, len(self._levels)):
            # A level made just now is filled whole from the one below.
            self._fill_level(li, first if li < existing else 0)
        self._clean = n

    def _new_level(self, block: int) -> tuple[int, np.ndarray, np.ndarray]:
        shape = (len(self.columns), -(-len(self._steps) // block))
        return block, np.empty(shape, np.float32), np.empty(shape, np.float32)

    def _fill_level(self, li: int, first_sample: int) -> None:
        block, mins, maxs = self._levels[li]
        _, fine_min, fine_max = self._levels[li - 1]
        n = self._n
        lo_block = first_sample // block
        hi_block = -(-n // block)
        fine_block = block // FANOUT
        f_lo = lo_block * FANOUT
        f_hi = -(-n // fine_block)
        if f_hi <= f_lo:
            return
        idx = np.arange(0, f_hi - f_lo, FANOUT)
        with np.errstate(invalid="ignore"):
            mins[:, lo_block:hi_block] = np.fmin.reduceat(fine_min[:, f_lo:f_hi], idx, axis=1)
            maxs[:, lo_block:hi_block] = np.fmax.reduceat(fine_max[:, f_lo:f_hi], idx, axis=1)

    def view(self, name: str, points: int, start: int = 0, stop: int | None = None) -> View:
        """At most `points` buckets over samples [start, stop), each with its min and max.

        Costs O(points), not O(stop - start): buckets are made of whole pyramid blocks.
        For a window that does not start or end on a block edge, the edge buckets may
        take in up to one block (under `(stop - start) / points` samples) beyond it.
        """
        n = self._n
        stop = n if stop is None else max(0, min(int(stop), n))
        start = max(0, min(int(start), stop))
        count = stop - start
        points = max(1, int(points))
        row = self._col[name]
        if count <= points:
            x = self._steps[start:stop].astype(np.float64)
            v = np.array(self._raw(row, start, stop))
            return View(x, x, v, v)
        per = count / points
        if per < BLOCK * FANOUT:
            # Fine enough to bucket the raw samples: under BLOCK*FANOUT*points numbers.
            edges = start + (np.arange(points) * count) // points
            seg = self._raw(row, start, stop)
            rel = edges - start
            with np.errstate(invalid="ignore"):
                lo = np.fmin.reduceat(seg, rel)
                hi = np.fmax.reduceat(seg, rel)
            ends = np.append(edges[1:], stop) - 1
            return View(self._steps[edges].astype(np.float64),
                        self._steps[ends].astype(np.float64), lo, hi)
        self._update_pyramid()
        # The coarsest level whose blocks are no bigger than a bucket: < FANOUT*points blocks.
        level = self._levels[0]
        for lv in self._levels:
            if lv[0] <= per:
                level = lv
        block, mins, maxs = level
        b0 = start // block
        b1 = -(-stop // block)
        m = b1 - b0
        rel = np.unique((np.arange(points) * m) // points)
        with np.errstate(invalid="ignore"):
            lo = np.fmin.reduceat(mins[row, b0:b1], rel)
            hi = np.fmax.reduceat(maxs[row, b0:b1], rel)
        first = np.maximum((b0 + rel) * block, start)
        last = np.minimum(np.append((b0 + rel[1:]) * block, stop), stop) - 1
        return View(self._steps[first].astype(np.float64),
                    self._steps[last].astype(np.float64), lo, hi)


def downsample_minmax(values: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bucket edges, min and max of each bucket of a plain array (the reference for tests)."""
    values = np.asarray(values, np.float32)
    n = len(values)
    if n <= points:
        return np.arange(n), values.copy(), values.copy()
    edges = np.unique((np.arange(points) * n) // points)
    with np.errstate(invalid="ignore"):
        return edges, np.fmin.reduceat(values, edges), np.fmax.reduceat(values, edges)


# --- a run's histories ------------------------------------------------------------------------

_STORED = tuple(c for c in COLUMNS if c not in COMPUTED)
_N_STORED = len(_STORED)
_LOOKUP = _STORED + SCALARS
_OR_AT = COLUMNS.index("odds_ratio_loss")
_STORED_AT = [COLUMNS.index(c) for c in _STORED]
_LOSS_AT = _STORED.index("loss")
_NLL_AT = _STORED.index("nll_loss")

#: Train steps that the step rate (and so the ETA) is measured over.
RATE_WINDOW = 50


class RunHistory:
    """Everything the monitor plots about one run: a History per mode, plus latest scalars."""

    def __init__(self, capacity: int = 1024):
        self.modes: dict[str, History] = {
            "train": History(COLUMNS, capacity), "eval": History(COLUMNS, 64)}
        self.extractor = MetricExtractor()
        self.latest: dict[str, dict[str, float]] = {"train": {}, "eval": {}}
        self.first_time = NAN
        self.last_time = NAN
        self.last_step = 0
        self._recent: deque[tuple[int, float]] = deque(maxlen=RATE_WINDOW)
        self.records = 0
        self.version = 0

    @property
    def train(self) -> History:
        return self.modes["train"]

    @property
    def eval(self) -> History:
        return self.modes["eval"]

    def add(self, records: Sequence[Any]) -> int:
        """Append MetricRecords (anything with step, mode, time, metrics, derived)."""
        if not isinstance(records, Sequence):
            records = list(records)
        # Rows go straight into one float32 array per mode: no per-value Python floats
        # kept around, so a big batch costs little more than its final storage.
        modes = [rec.mode if rec.mode in self.modes else "train" for rec in records]
        counts = {mode: modes.count(mode) for mode in self.modes}
        rows = {mode: np.empty((n, len(COLUMNS)), np.float32) for mode, n in counts.items() if n}
        steps = {mode: np.empty(n, np.int64) for mode, n in counts.items() if n}
        filled = dict.fromkeys(rows, 0)
        extract = self.extractor.extract
        recent = self._recent
        for rec, mode in zip(records, modes):
            vals = extract(mode, rec.metrics, rec.derived, _LOOKUP)
            i = filled[mode]
            filled[mode] = i + 1
            row = rows[mode][i]
            row[_STORED_AT] = vals[:_N_STORED]
            # loss = nll - beta * log_odds_ratio, so the odds-ratio part is loss - nll.
            row[_OR_AT] = vals[_LOSS_AT] - vals[_NLL_AT]
            steps[mode][i] = rec.step
            latest = self.latest[mode]
            for name, v in zip(SCALARS, vals[_N_STORED:]):
                if v == v:  # a record that lacks it keeps the last known value
                    latest[name] = v
            t = float(rec.time)
            if t > 0:  # also false for NaN
                if not self.first_time <= t:
                    self.first_time = t
                if not self.last_time >= t:
                    self.last_time = t
                if mode == "train":
                    recent.append((int(rec.step), t))
            if mode == "train" and rec.step > self.last_step:
                self.last_step = int(rec.step)
        for mode in rows:
            self.modes[mode].extend(steps[mode], rows[mode])
        if records:
            self.records += len(records)
            self.version += 1
        return len(records)

    def last(self, name: str, mode: str = "train") -> float:
        """Latest value of a column or scalar."""
        if name in self.latest[mode]:
            return self.latest[mode][name]
        if name in COLUMNS:
            return self.modes[mode].last(name)
        return NAN

    def step_rate(self) -> float:
        """Train steps per second over the last RATE_WINDOW steps (NaN until two are seen)."""
        if len(self._recent) < 2:
            return NAN
        (s0, t0), (s1, t1) = self._recent[0], self._recent[-1]
        if t1 <= t0 or s1 <= s0:
            return NAN
        return (s1 - s0) / (t1 - t0)

    def eta_seconds(self, total_steps: int) -> float:
        """Seconds left at the recent step rate (NaN when unknown)."""
        if total_steps <= 0:
            return NAN
        left = max(0, total_steps - self.last_step)
        if left == 0:
            return 0.0
        rate = self.step_rate()
        return left / rate if rate == rate and rate > 0 else NAN

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes for h in self.modes.values())
