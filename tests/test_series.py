"""The metric histories behind the Monitor's plots: storage, min/max downsampling, lookup."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from orpo_tui.job.records import MetricRecord
from orpo_tui.series import (
    COLUMNS, FANOUT, GROWTH, SEGMENT, History, MetricExtractor, RunHistory, downsample_minmax,
)


def _filled(n: int, seed: int = 0, chunk: int = 997) -> tuple[History, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=n).astype(np.float32)
    h = History(["a", "b"], capacity=16)
    for i in range(0, n, chunk):
        part = data[i:i + chunk]
        h.extend(np.arange(i, i + len(part)), np.stack([part, -part], axis=1))
    return h, data


def _check_buckets(view, data: np.ndarray) -> None:
    """Each bucket's lo/hi is exactly the min/max of the samples its steps cover."""
    for j in range(len(view)):
        seg = data[int(view.x0[j]): int(view.x1[j]) + 1]
        assert len(seg) > 0
        if np.isnan(seg).all():
            assert math.isnan(view.lo[j]) and math.isnan(view.hi[j])
        else:
            assert view.lo[j] == np.nanmin(seg)
            assert view.hi[j] == np.nanmax(seg)


@pytest.mark.parametrize("points", [1, 7, 100, 333, 1000, 4096])
def test_view_keeps_min_and_max_of_every_bucket(points):
    h, data = _filled(50_003)
    view = h.view("a", points)
    assert 1 <= len(view) <= points
    _check_buckets(view, data)
    # The buckets tile the whole history, in order, without gaps or overlaps.
    assert view.x0[0] == 0 and view.x1[-1] == len(data) - 1
    assert np.all(view.x0[1:] == view.x1[:-1] + 1)
    # ... so the overall extremes are never lost.
    assert np.nanmin(view.lo) == data.min() and np.nanmax(view.hi) == data.max()


def test_view_ignores_nan_and_keeps_all_nan_buckets_as_gaps():
    h, data = _filled(20_000)
    h2 = History(["a"], capacity=16)
    data[3000:9000] = np.nan
    h2.extend(np.arange(len(data)), data[:, None])
    view = h2.view("a", 100)
    _check_buckets(view, data)
    assert np.isnan(view.lo).any()  # a run of NaN shows as a gap ...
    assert np.isfinite(view.lo).sum() > 50  # ... not as a missing plot


def test_view_of_a_window_is_bounded_and_stays_inside_it_up_to_one_block():
    h, data = _filled(100_000)
    view = h.view("b", 200, start=12_345, stop=80_001)
    assert len(view) <= 200
    assert view.x0[0] == 12_345 and view.x1[-1] == 80_000
    # Edge buckets may reach into their block, never further than one bucket's span.
    span = (80_001 - 12_345) / 200
    inside = -data[12_345 - int(span): 80_001 + int(span)]
    assert np.nanmin(view.lo) >= inside.min() and np.nanmax(view.hi) <= inside.max()


def test_short_history_is_returned_as_is():
    h = History(["a"])
    for i in range(10):
        h.append(i * 2, {"a": float(i)})
    view = h.view("a", 100)
    assert list(view.x0) == list(range(0, 20, 2))
    assert list(view.lo) == list(view.hi) == [float(i) for i in range(10)]


def test_view_matches_the_plain_reference_on_bucket_edges():
    values = np.random.default_rng(3).normal(size=640).astype(np.float32)
    edges, lo, hi = downsample_minmax(values, 64)
    assert len(edges) == len(lo) == len(hi) <= 64
    for j, start in enumerate(edges):
        stop = edges[j + 1] if j + 1 < len(edges) else len(values)
        assert lo[j] == values[start:stop].min() and hi[j] == values[start:stop].max()


def test_views_stay_exact_while_appending_between_them():
    rng = np.random.default_rng(7)
    h = History(["a"], capacity=16)
    data = []
    for round_ in range(40):
        part = rng.normal(size=int(rng.integers(1, 3000))).astype(np.float32)
        h.extend(np.arange(len(data), len(data) + len(part)), part[:, None])
        data.extend(part)
        if round_ % 3 == 0:
            _check_buckets(h.view("a", 257), np.array(data, np.float32))
    _check_buckets(h.view("a", 100), np.array(data, np.float32))


def test_view_cost_does_not_grow_with_history():
    """A view reads O(points) numbers: its pyramid level has fewer than FANOUT*points blocks."""
    h, _ = _filled(1 << 18)
    h.view("a", 300)
    levels = h._levels
    for n_points in (100, 300, 1000):
        per = len(h) / n_points
        level = max((lv for lv in levels if lv[0] <= per), key=lambda lv: lv[0])
        assert len(h) / level[0] < FANOUT * n_points + 2


def test_appends_are_amortised_constant():
    h = History(["a", "b", "c"], capacity=16)
    n = 200_000
    for i in range(n):
        h.append(i, (1.0, 2.0, 3.0))
    assert len(h) == n and h.capacity >= n
    # Values go into fixed segments (never copied); the step axis and pyramid grow
    # geometrically: a logarithmic number of reallocations, and all the copying
    # together stays within a constant factor of the samples appended.
    assert len(h._segments) == math.ceil(n / SEGMENT)
    assert h.grow_count <= math.ceil(math.log(n / 16, GROWTH)) + 1
    assert h.copied <= 4 * n
    assert h.capacity <= GROWTH * n + SEGMENT


def test_memory_is_a_few_bytes_per_sample_per_column():
    h, _ = _filled(2 * SEGMENT)
    h.view("a", 100)  # builds the pyramid
    per_sample = h.nbytes / len(h)
    # int32 step (with growth slack) + 2 float32 columns, plus the pyramid (under a fifth).
    assert per_sample <= 4 * GROWTH + 2 * 4 * 1.2


def test_append_by_name_leaves_missing_columns_nan():
    h = History(["a", "b"])
    h.append(1, {"a": 1.5})
    assert h.last("a") == 1.5 and math.isnan(h.last("b"))


def _record(step, mode="train", time=0.0, **metrics):
    return MetricRecord(step, mode, time, metrics)


def test_extractor_finds_easydel_names_and_eval_prefixes():
    ex = MetricExtractor()
    train = {"train/loss": 1.0, "train/nll_loss": 0.9, "train/logps/chosen": -1.2,
             "train/train_step_time": 0.02, "train-mlperf/throughput": 5000.0}
    assert ex.extract("train", train, {}, ["loss", "nll_loss", "logps_chosen", "step_time",
                                           "padded_tokens_per_s"]) == [1.0, 0.9, -1.2, 0.02, 5000.0]
    ev = {"eval/loss": 1.1, "eval/eval_nll_loss": 1.0, "eval/eval_logps/chosen": -1.3,
          "eval/eval_step_time": 0.01}
    assert ex.extract("eval", ev, {}, ["loss", "nll_loss", "logps_chosen", "step_time"]) == \
        [1.1, 1.0, -1.3, 0.01]
    # derived values take precedence over EasyDeL's padded throughput
    assert ex.extract("train", train, {"padded_tokens_per_s": 42.0}, ["padded_tokens_per_s"]) == [42.0]


def test_missing_or_odd_metrics_are_nan_never_errors():
    ex = MetricExtractor()
    out = ex.extract("train", {"train/loss": "oops", "train/nll_loss": None, "train/tflops": True},
                     {}, ["loss", "nll_loss", "tflops", "log_odds_ratio", "no-such-thing"])
    assert all(math.isnan(v) for v in out)
    h = RunHistory()
    h.add([_record(1), _record(2, **{"train/loss": 2.0}), _record(3, mode="weird")])
    assert len(h.train) == 3 and h.last("loss") != h.last("loss")  # the newest lacks it: NaN
    assert h.train.column("loss")[1] == 2.0


def test_run_history_splits_modes_and_derives_the_odds_ratio_part():
    h = RunHistory()
    h.add([_record(1, time=10.0, **{"train/loss": 2.0, "train/nll_loss": 1.5, "train/epoch": 0.1}),
           _record(2, time=11.0, **{"train/loss": 1.8, "train/nll_loss": 1.4}),
           _record(2, mode="eval", time=11.5, **{"eval/loss": 1.9, "eval/eval_nll_loss": 1.6})])
    assert len(h.train) == 2 and len(h.eval) == 1
    assert h.last("odds_ratio_loss") == pytest.approx(0.4)
    assert h.last("odds_ratio_loss", "eval") == pytest.approx(0.3)
    assert h.last("epoch") == pytest.approx(0.1)  # kept over a record that lacks it
    assert (h.first_time, h.last_time, h.last_step) == (10.0, 11.5, 2)
    assert set(COLUMNS) >= {"loss", "nll_loss", "odds_ratio_loss"}


def test_eta_comes_from_the_recent_step_rate_of_record_times():
    h = RunHistory()
    h.add([_record(s, time=100.0 + 2.0 * s) for s in range(1, 11)])
    assert h.step_rate() == pytest.approx(0.5)
    assert h.eta_seconds(20) == pytest.approx(20.0)
    assert math.isnan(h.eta_seconds(0))
    assert h.eta_seconds(10) == 0.0


def test_core_never_imports_textual():
    code = "import sys, orpo_tui.series; assert 'textual' not in sys.modules, 'textual imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
