"""The RunActor's bookkeeping, in-process (no Ray): cursors, eviction to disk, run files, file handles."""

from __future__ import annotations

import json

import pytest

from orpo_tui.job import actor as actor_mod
from orpo_tui.job import store
from orpo_tui.job.client import RunHandle
from orpo_tui.job.records import RUNNING, STARTING

SPEC = {"preset_name": "unit", "model": {"pretrained_model_name_or_path": "m"},
        "accelerator": {"kind": "cpu", "type": "cpu", "count": 1}}


@pytest.fixture
def run_actor(tmp_path, monkeypatch):
    monkeypatch.setattr(actor_mod, "MEMORY_STEPS", 10)
    a = actor_mod.RunActor("r1", str(tmp_path / "r1"), SPEC, 'name = "unit"\n', {}, {}, "127.0.0.1")
    yield a
    a.receiver.close()
    a.store.close()


def feed(a, first: int, last: int) -> None:
    for step in range(first, last + 1):
        a._on_message({"k": "metric", "step": step, "mode": "train", "time": 1000.0 + step,
                       "metrics": {"train/loss": 10.0 / step}, "derived": {}})


def drain(a, cursors=(0, 0, 0)) -> tuple[list[int], tuple[int, int, int]]:
    """Poll until nothing more is waiting, as a client does; returns the steps and the cursors."""
    steps = []
    while True:
        u = a.poll(*cursors, timeout=0)
        steps += [m.step for m in u.metrics]
        cursors = (u.metric_cursor, u.log_cursor, u.event_cursor)
        if not u.more:
            return steps, cursors


def test_polls_are_paged(run_actor, monkeypatch):
    monkeypatch.setattr(actor_mod, "POLL_PAGE", 4)
    a = run_actor
    feed(a, 1, 25)  # 15 on disk only, 10 in memory
    u = a.poll(0, 0, 0, timeout=0)
    assert [m.step for m in u.metrics] == [1, 2, 3, 4] and u.more
    u = a.poll(12, 0, 0, timeout=0)  # the last disk page stops at the memory boundary
    assert [m.step for m in u.metrics] == [13, 14, 15] and u.more
    u = a.poll(23, 0, 0, timeout=0)
    assert [m.step for m in u.metrics] == [24, 25] and not u.more
    assert drain(a)[0] == list(range(1, 26))


def test_cursors_give_every_step_once_even_after_memory_eviction(run_actor):
    a = run_actor
    a.info.state = STARTING
    a._on_message({"k": "event", "kind": "configured", "total_steps": 25})
    feed(a, 1, 7)
    got, cur = drain(a)
    assert got == list(range(1, 8))
    feed(a, 8, 25)  # memory holds 10: steps 1..15 now live only in metrics.jsonl
    assert a._metric_base == 15
    more, cur = drain(a, cur)
    assert more == list(range(8, 26))
    late_joiner, _ = drain(a)
    assert late_joiner == list(range(1, 26))
    assert a.info.state == RUNNING and a.info.step == 25 and a.info.total_steps == 25
    assert a.info.last_loss == pytest.approx(10.0 / 25)
    assert drain(a, cur)[0] == []


def test_derived_eta_and_files(run_actor, tmp_path):
    a = run_actor
    a.info.state = STARTING
    a._on_message({"k": "event", "kind": "configured", "total_steps": 100})
    feed(a, 1, 11)  # one step a second
    last = a.poll(10, 0, 0, timeout=0).metrics[-1]
    assert last.derived["eta_s"] == pytest.approx(89.0)
    a._on_message({"k": "log", "line": "hello from the trainer"})
    lines = (tmp_path / "r1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 12))
    assert (tmp_path / "r1" / "trainer.log").read_text() == "hello from the trainer\n"
    events = [json.loads(x) for x in (tmp_path / "r1" / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events][-2:] == ["configured", "state"] and events[-1]["state"] == "running"


def test_file_handle_reads_a_run_with_no_actor(tmp_path):
    s = store.RunStore(tmp_path / "r2")
    from orpo_tui.job.records import MetricRecord, RunInfo

    s.write_info(RunInfo("r2", "running", step=2))
    for step in (1, 2):
        s.append_metric(MetricRecord(step, "train", 0.0, {"train/loss": 1.0}))
    s.append_log("line 1")
    h = RunHandle("r2", tmp_path / "r2", actor=None)
    u = h.poll()
    assert [m.step for m in u.metrics] == [1, 2] and u.logs == ["line 1"]
    # A live-looking run with no actor has lost its owner: it is shown failed, not "running" forever.
    assert u.info.state == "failed" and "actor is gone" in u.info.error
    s.append_metric(MetricRecord(3, "train", 0.0, {"train/loss": 0.5}))
    s.append_log("line 2")
    u2 = h.poll()
    assert [m.step for m in u2.metrics] == [3] and u2.logs == ["line 2"]
    s.close()


def test_truncate_metrics_sets_records_past_the_checkpoint_aside(tmp_path):
    s = store.RunStore(tmp_path / "r3")
    from orpo_tui.job.records import MetricRecord

    for step in range(1, 8):
        s.append_metric(MetricRecord(step, "train", 0.0, {}))
    s.close()
    assert store.truncate_metrics(tmp_path / "r3", 5) == 2
    assert [m.step for m in store.read_metrics(tmp_path / "r3")] == [1, 2, 3, 4, 5]
    aside = (tmp_path / "r3" / "metrics.replaced.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in aside] == [6, 7]
    assert store.checkpoint_step("/x/checkpoints/qwen3/run-30") == 30
