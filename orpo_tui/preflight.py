"""Dataset preflight: what the ORPO trainer will make of a preset's preference set.

Loads the training split the way the trainer does (`resolve.dataset_args`),
renders and tokenizes every pair (or a deterministic sample) exactly as
EasyDeL 0.3.0's `ORPOPreprocessTransform` does, and reports the format, one
example with its prompt/completion boundaries, length statistics and
histograms, truncation at the preset's limits, suggested limits, and bad
pairs. `blocking` problems make a run meaningless (the console refuses to
launch, the CLI exits 2); `warnings` do not.

No textual, easydel or jax here; transformers and datasets are imported
inside the functions that need them (seconds to import).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import logging
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from orpo_tui.preset import Preset

DEFAULT_SAMPLE = 2000
HIST_BINS = 10
EXAMPLE_CHARS = 600
MAX_LISTED_ROWS = 10

# Format codes and what they mean to a user.
IMPLICIT_CONVERSATIONAL = "implicit-conversational"
EXPLICIT_CONVERSATIONAL = "explicit-conversational"
EXPLICIT_TEXT = "explicit-text"
IMPLICIT_TEXT = "implicit-text"
MISMATCHED = "mismatched"
UNKNOWN = "unknown"
FORMATS = {
    IMPLICIT_CONVERSATIONAL: "implicit prompt: chosen/rejected are conversations that start with the shared user turn",
    EXPLICIT_CONVERSATIONAL: "explicit prompt: prompt is a message list, chosen/rejected are the assistant turn(s)",
    EXPLICIT_TEXT: "explicit prompt: prompt, chosen and rejected are plain strings",
    IMPLICIT_TEXT: "implicit prompt: no prompt column, chosen/rejected are plain strings sharing a prefix",
    MISMATCHED: "prompt is a message list but chosen/rejected are plain strings",
    UNKNOWN: "not a preference format EasyDeL reads",
}

# EasyDeL's role names for ShareGPT-style ("from"/"value") messages.
_CHATML_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user",
                 "assistant": "assistant"}
_TEMPLATE_KEYS = ("prompt", "chosen", "rejected", "completion", "messages", "label")
_TEMPLATE_KEY_SETS = [{"messages"}, {"prompt"}, {"prompt", "completion"}, {"prompt", "chosen", "rejected"},
                      {"chosen", "rejected"}, {"prompt", "completion", "label"}]


# ---------------------------------------------------------------- report model

@dataclass
class HistogramBin:
    lo: int
    hi: int  # inclusive
    count: int


@dataclass
class LengthStats:
    """Token lengths of one field over the checked pairs."""

    n: int = 0
    min: int = 0
    max: int = 0
    mean: float = 0.0
    p50: int = 0
    p95: int = 0
    p99: int = 0
    limit: int = 0  # the preset's max length for this field
    over_limit: int = 0  # pairs longer than `limit`
    histogram: list[HistogramBin] = field(default_factory=list)


@dataclass
class Truncation:
    """Pairs cut at the preset's limits (a pair counts once per kind)."""

    prompt: int = 0  # prompt > orpo.max_prompt_length (EasyDeL keeps the prompt's end)
    completion: int = 0  # chosen or rejected > orpo.max_completion_length (keeps the start)
    total: int = 0  # prompt + longer completion > orpo.max_length
    any: int = 0
    prompt_share: float = 0.0
    completion_share: float = 0.0
    total_share: float = 0.0
    any_share: float = 0.0


@dataclass
class Suggestion:
    """Smallest limit that keeps 95% / 99% of the pairs whole."""

    p95: int = 0
    p99: int = 0


@dataclass
class ExampleRendering:
    """One pair as EasyDeL tokenizes it: templated prompt, then each completion (+ EOS)."""

    row: int
    prompt_text: str
    chosen_text: str
    rejected_text: str
    eos_token: str  # appended to each completion by EasyDeL ("" when the tokenizer has none)
    prompt_tokens: int
    chosen_tokens: int  # with the EOS
    rejected_tokens: int
    # Text EasyDeL drops at the current limits: the prompt's start, the completions' ends.
    prompt_cut: str = ""
    chosen_cut: str = ""
    rejected_cut: str = ""


@dataclass
class PreflightReport:
    preset_name: str = ""
    source: str = ""  # dataset file(s) or hub id
    split: str = ""
    tokenizer: str = ""
    format: str = UNKNOWN
    format_description: str = FORMATS[UNKNOWN]
    columns: list[str] = field(default_factory=list)
    n_total: int = 0  # pairs the trainer would see (after dataset.max_examples)
    n_pairs: int = 0  # pairs checked here
    sampled: bool = False
    max_prompt_length: int = 0
    max_completion_length: int = 0
    max_length: int = 0
    example: ExampleRendering | None = None
    lengths: dict[str, LengthStats] = field(default_factory=dict)  # prompt, chosen, rejected, total
    truncation: Truncation = field(default_factory=Truncation)
    suggested: dict[str, Suggestion] = field(default_factory=dict)  # keyed by the orpo.* name
    fill: float = 0.0  # real tokens / padded tokens of a chosen sequence, on average
    n_identical: int = 0
    n_empty: int = 0
    n_empty_prompt: int = 0
    n_prompt_twice: int = 0
    identical_rows: list[int] = field(default_factory=list)
    empty_rows: list[int] = field(default_factory=list)
    prompt_twice_rows: list[int] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: (row, prompt, chosen, rejected) token counts of every checked pair, EOS included;
    #: left out of `to_dict` (thousands of rows).
    pair_lengths: list[tuple[int, int, int, int]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.blocking

    def to_dict(self, *, pair_lengths: bool = False) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not pair_lengths:
            del out["pair_lengths"]
        out["ok"] = self.ok
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


class PreflightError(Exception):
    """A problem found before any pair could be checked; `str()` is the one line."""


# ---------------------------------------------------------------- EasyDeL's rendering, ported

def _maybe_json_load(value: str) -> Any:
    stripped = value.strip()
    if not stripped or stripped[0] not in "{[":
        return value
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        return value


def normalize_messages(payload: Any, *, allow_plain_text: bool = False) -> list[dict[str, Any]] | None:
    """EasyDeL's `normalize_message_payload`: a chat as [{role, content}], or None if it is not one."""

    def single(item: Any) -> list[dict[str, Any]] | None:
        if isinstance(item, str):
            parsed = _maybe_json_load(item)
            if parsed is not item:
                return normalize_messages(parsed, allow_plain_text=allow_plain_text)
            return [{"role": "user", "content": item}] if allow_plain_text else None
        if isinstance(item, dict):
            if "from" in item and "value" in item:
                out = {k: v for k, v in item.items() if k not in ("from", "value")}
                out["role"] = _CHATML_ROLES.get(item.get("from", "user"), item.get("from", "user"))
                out["content"] = item.get("value", "")
                return [out]
            if "role" in item:
                out = dict(item)
                out.setdefault("content", "")
                return [out]
            if "content" in item and allow_plain_text:
                out = dict(item)
                out.setdefault("role", "user")
                return [out]
            return None
        if isinstance(item, list):
            return normalize_messages(item, allow_plain_text=allow_plain_text)
        return None

    if payload is None:
        return None
    if isinstance(payload, list):
        turns: list[dict[str, Any]] = []
        for item in payload:
            got = single(item)
            if got is None:
                return None
            turns.extend(got)
        return turns
    return single(payload)


def _is_conversational(example: dict[str, Any]) -> bool:
    for key in ("prompt", "chosen", "rejected", "completion", "messages", "conversations", "conversation"):
        if normalize_messages(example.get(key), allow_plain_text=(key == "messages")):
            return True
    return False


def _to_chatml(example: dict[str, Any]) -> dict[str, Any]:
    out = dict(example)
    for old in ("conversations", "conversation"):
        if old in out:
            out["messages"] = out.pop(old)
    for key in ("prompt", "completion", "chosen", "rejected", "messages"):
        if key in out:
            normalized = normalize_messages(out[key], allow_plain_text=(key == "messages"))
            if normalized is not None:
                out[key] = normalized
    return out


def _extract_prompt(chosen: Any, rejected: Any) -> dict[str, Any]:
    # Ported as is, quirks included: identical sequences keep their last element as the completion.
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):
        if chosen[idx] != rejected[idx]:
            if chosen[idx - 1] == " ":
                idx -= 1
            break
    return {"prompt": chosen[:idx], "chosen": chosen[idx:], "rejected": rejected[idx:]}


def _maybe_extract_prompt(example: dict[str, Any]) -> dict[str, Any]:
    if "chosen" not in example or "rejected" not in example:
        return example
    if "prompt" in example:
        chosen_conv = _is_conversational({"chosen": example["chosen"]})
        prompt_conv = _is_conversational({"prompt": example["prompt"]})
        if chosen_conv == prompt_conv:
            return example
    return _extract_prompt(example["chosen"], example["rejected"])


def _tools(example: dict[str, Any]) -> Any:
    def norm(payload: Any) -> Any:
        if isinstance(payload, str):
            parsed = _maybe_json_load(payload)
            return norm(parsed) if parsed is not payload else payload
        if isinstance(payload, (list, tuple)):
            out: list[Any] = []
            for item in payload:
                got = norm(item)
                out.extend(got) if isinstance(got, list) else out.append(got)
            return out
        return dict(payload) if isinstance(payload, dict) else payload

    tools = norm(example.get("tools"))
    return [tools] if isinstance(tools, dict) else tools


def _suffix_messages(value: Any, name: str) -> list[dict[str, Any]]:
    normalized = normalize_messages(value, allow_plain_text=False)
    if normalized is not None:
        return normalized
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    raise TypeError(f"`{name}` must be a string or a list of chat messages, received {type(value)}.")


def render_pair(example: dict[str, Any], tokenizer: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen, rejected) text exactly as EasyDeL's ORPO transform tokenizes them.

    Follows `DPOPreprocessTransform.__call__` in easydel 0.3.0: ShareGPT to ChatML,
    prompt extraction from chosen/rejected when the prompt is absent (or its
    format differs from theirs), then the chat template for conversational data:
    the prompt rendered with the generation prompt, each completion as the
    rendered conversation minus that prefix. Raises what EasyDeL would raise.
    """
    example = _to_chatml(example)
    sideband = {k: v for k, v in example.items() if k != "messages"}
    result = {**sideband, **_maybe_extract_prompt(example)}
    if "prompt" not in result and isinstance(example.get("messages"), list):
        result["prompt"] = example["messages"]
    tools = _tools(result)
    if _is_conversational(result):
        result = _to_chatml(result)
        keys = {k for k in result if k in _TEMPLATE_KEYS}
        if keys not in _TEMPLATE_KEY_SETS:
            raise KeyError(f"Invalid keys in the example: {keys}")
        prompt = result.get("prompt")
        if isinstance(prompt, list):
            prompt_text = tokenizer.apply_chat_template(prompt, tools=tools, tokenize=False,
                                                        add_generation_prompt=True)
            completions = []
            for name in ("chosen", "rejected"):
                full = tokenizer.apply_chat_template(prompt + _suffix_messages(result[name], name),
                                                     tools=tools, tokenize=False)
                if not full.startswith(prompt_text):
                    raise ValueError(f"The chat template applied to the prompt + suffix does not start "
                                     f"with the chat template applied to the prompt alone for `{name}`.")
                completions.append(full[len(prompt_text):])
            return prompt_text, completions[0], completions[1]
        if "prompt" in result and any(isinstance(result.get(k), list) for k in ("chosen", "rejected")):
            raise ValueError("Conversational chosen/rejected/completion values require `prompt` to be a "
                             "conversational message list so the full conversation can be rendered safely.")
    return result["prompt"], result["chosen"], result["rejected"]


def classify(example: dict[str, Any]) -> str:
    """Which preference format a row is in (as EasyDeL will read it)."""
    example = _to_chatml(example)
    if "chosen" not in example or "rejected" not in example:
        return UNKNOWN
    chosen_conv = _is_conversational({"chosen": example["chosen"]})
    has_prompt = "prompt" in example and example["prompt"] is not None
    prompt_conv = has_prompt and _is_conversational({"prompt": example["prompt"]})
    if chosen_conv:
        return EXPLICIT_CONVERSATIONAL if prompt_conv else IMPLICIT_CONVERSATIONAL
    if prompt_conv:
        return MISMATCHED
    return EXPLICIT_TEXT if has_prompt else IMPLICIT_TEXT


def _prompt_twice(example: dict[str, Any]) -> bool:
    """The prompt's user turn also opens chosen or rejected, so the model reads it twice."""
    example = _to_chatml(example)
    prompt, chosen, rejected = example.get("prompt"), example.get("chosen"), example.get("rejected")
    if isinstance(prompt, list) and isinstance(chosen, list) and isinstance(rejected, list):
        asked = [m for m in prompt if m.get("role") != "assistant" and str(m.get("content") or "").strip()]
        return any(m in asked for side in (chosen, rejected) for m in side if m.get("role") != "assistant")
    if isinstance(prompt, str) and isinstance(chosen, str) and isinstance(rejected, str) and prompt.strip():
        return chosen.startswith(prompt) and rejected.startswith(prompt)
    return False


def _content(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(m.get("content") or "") for m in value if isinstance(m, dict))
    return "" if value is None else str(value)


# ---------------------------------------------------------------- statistics

def percentile_length(values: list[int], pct: int) -> int:
    """Smallest length that keeps `pct`% of `values` whole (nearest rank)."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))
    return ordered[rank - 1]


def histogram(values: list[int], bins: int = HIST_BINS, limit: int | None = None) -> list[HistogramBin]:
    """Equal-width integer bins from min to max; a bin that straddles `limit` is split there."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    width = max(1, math.ceil((hi - lo + 1) / bins))
    edges = list(range(lo, hi + 1, width))  # first value of each bin
    if limit is not None and lo <= limit < hi and (limit + 1 - lo) % width:
        edges = sorted({*edges, limit + 1})
    ends = [e - 1 for e in edges[1:]] + [max(hi, edges[-1] + width - 1)]
    counts = [0] * len(edges)
    for v in values:
        counts[bisect.bisect_right(edges, v) - 1] += 1
    return [HistogramBin(a, b, c) for a, b, c in zip(edges, ends, counts)]


def length_stats(values: list[int], limit: int) -> LengthStats:
    if not values:
        return LengthStats(limit=limit)
    return LengthStats(n=len(values), min=min(values), max=max(values),
                       mean=round(sum(values) / len(values), 2), p50=percentile_length(values, 50),
                       p95=percentile_length(values, 95), p99=percentile_length(values, 99), limit=limit,
                       over_limit=sum(v > limit for v in values), histogram=histogram(values, limit=limit))


# ---------------------------------------------------------------- loading

def _where(preset: Preset) -> tuple[str, str]:
    """(key, source) naming the training data in messages."""
    from orpo_tui.job import resolve

    d = resolve.dataset_args(preset)
    if d["data_files"]:
        files = d["data_files"].get(d["split"]) or []
        return f"dataset.data_files.{d['split']}", ", ".join(files) or "(no files)"
    return "dataset.id", d["path"]


def load_rows(preset: Preset) -> tuple[Any, list[str]]:
    """The training split as the trainer loads it (after dataset.max_examples), and its columns."""
    from orpo_tui.job import resolve

    d = resolve.dataset_args(preset)
    key, source = _where(preset)
    try:
        import datasets

        # Progress bars would scribble over the console and the one-line CLI contract.
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            with _quiet_loggers():
                if d["data_files"]:
                    ds = datasets.load_dataset(d["path"], data_files={d["split"]: d["data_files"][d["split"]]},
                                               split=d["split"])
                else:
                    ds = datasets.load_dataset(d["path"], split=d["split"])
        finally:
            if bars:
                datasets.enable_progress_bars()
    except Exception as e:  # noqa: BLE001 - any loader failure is one line for the user
        raise PreflightError(f"{source}: {key}: cannot load split {d['split']!r}: "
                             f"{type(e).__name__}: {_first_line(e)}") from None
    if d.get("max_examples"):
        ds = ds.select(range(min(int(d["max_examples"]), len(ds))))
    return ds, list(ds.column_names)


def load_tokenizer(preset: Preset) -> Any:
    from orpo_tui.job import resolve

    ref = resolve.model_ref(preset, preset.model.tokenizer or preset.model.id)
    key = "model.tokenizer" if preset.model.tokenizer else "model.id"
    try:
        from transformers import AutoTokenizer

        with _quiet_loggers():
            tokenizer = AutoTokenizer.from_pretrained(ref)
    except Exception as e:  # noqa: BLE001
        raise PreflightError(f"{ref}: {key}: cannot load the tokenizer: "
                             f"{type(e).__name__}: {_first_line(e)}") from None
    if tokenizer.pad_token_id is None:  # as the trainer does
        tokenizer.pad_token_id = tokenizer.eos_token_id
    return tokenizer


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """Hub retry chatter and loader warnings off while loading; failures are reported as one line."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "datasets", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else repr(e)


def sample_indices(n: int, sample: int | None) -> list[int]:
    """All rows, or `sample` of them chosen with a fixed seed (same rows every time)."""
    if sample is None or n <= sample:
        return list(range(n))
    return sorted(random.Random(0).sample(range(n), sample))


# ---------------------------------------------------------------- the check

def run_preflight(preset: Preset, *, sample: int | None = DEFAULT_SAMPLE) -> PreflightReport:
    """Load the preset's training split and tokenizer and check every pair (or a sample).

    Never raises for a dataset problem: it ends up in `report.blocking`.
    """
    key, source = _where(preset)
    o = preset.orpo
    report = PreflightReport(preset_name=preset.name, source=source, split=preset.dataset.split,
                             max_prompt_length=o.max_prompt_length,
                             max_completion_length=o.max_completion_length, max_length=o.max_length)
    try:
        ds, columns = load_rows(preset)
        report.columns = columns
        missing = [c for c in ("chosen", "rejected") if c not in columns]
        if missing:
            raise PreflightError(f"{source}: {key}: missing column{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(missing)} (has: {', '.join(columns) or 'none'})")
        if len(ds) == 0:
            raise PreflightError(f"{source}: {key}: split {preset.dataset.split!r} has no rows")
        tokenizer = load_tokenizer(preset)
        report.tokenizer = str(getattr(tokenizer, "name_or_path", "")) or preset.model.tokenizer or preset.model.id
    except PreflightError as e:
        report.blocking.append(str(e))
        return report
    rows_idx = sample_indices(len(ds), sample)
    report.n_total, report.n_pairs, report.sampled = len(ds), len(rows_idx), len(rows_idx) < len(ds)
    rows = ds.select(rows_idx) if report.sampled else ds
    _analyze(report, [(i, row) for i, row in zip(rows_idx, rows)], tokenizer, preset, source)
    return report


def _analyze(report: PreflightReport, rows: list[tuple[int, dict[str, Any]]], tokenizer: Any,
             preset: Preset, source: str) -> None:
    o = preset.orpo
    formats: dict[str, int] = {}
    rendered: list[tuple[int, str, str, str]] = []
    failures: list[tuple[int, str]] = []
    for row_no, row in rows:
        row = dict(row)
        fmt = classify(row)
        formats[fmt] = formats.get(fmt, 0) + 1
        if row.get("chosen") == row.get("rejected"):
            report.n_identical += 1
            _note_row(report.identical_rows, row_no)
        if _prompt_twice(row):
            report.n_prompt_twice += 1
            _note_row(report.prompt_twice_rows, row_no)
        try:
            prompt, chosen, rejected = render_pair(row, tokenizer)
        except Exception as e:  # noqa: BLE001 - EasyDeL would crash on this row; say which and why
            failures.append((row_no, f"{type(e).__name__}: {_first_line(e)}"))
            continue
        # An empty message list is not a conversation to EasyDeL; the tokenizer reads it as no text.
        prompt, chosen, rejected = ("" if isinstance(x, list) and not x else x for x in (prompt, chosen, rejected))
        if not all(isinstance(x, str) for x in (prompt, chosen, rejected)):
            failures.append((row_no, "prompt/chosen/rejected are not text after EasyDeL's formatting"))
            continue
        if any(not _content(_completion_part(row, side)).strip() for side in ("chosen", "rejected")):
            report.n_empty += 1
            _note_row(report.empty_rows, row_no)
        if not prompt.strip():
            report.n_empty_prompt += 1
        rendered.append((row_no, prompt, chosen, rejected))

    report.format = max(formats, key=lambda f: formats[f]) if formats else UNKNOWN
    report.format_description = FORMATS[report.format]
    if len(formats) > 1:
        mix = ", ".join(f"{f} {c}" for f, c in sorted(formats.items(), key=lambda kv: -kv[1]))
        report.warnings.append(f"rows mix preference formats ({mix})")
    # Named before the formatting failures it usually causes (the template check trips on it).
    n_seen = sum(formats.values())
    scope = "sampled pair" if report.sampled else "pair"
    if report.n_prompt_twice and report.n_prompt_twice * 2 >= n_seen:
        report.blocking.append(f"{source}: prompt counted twice in {report.n_prompt_twice}/{n_seen} {scope}s: the "
                               f"prompt's user turn also opens chosen/rejected (row {report.prompt_twice_rows[0]}); "
                               f"drop it from chosen/rejected or drop the prompt column")
    elif report.n_prompt_twice:
        report.warnings.append(f"prompt counted twice in {report.n_prompt_twice} {scope}s "
                               f"(rows {_rows(report.prompt_twice_rows)})")
    if failures:
        row_no, why = failures[0]
        report.blocking.append(f"{source}: row {row_no}: EasyDeL cannot format this pair ({why})"
                               + (f"; {len(failures) - 1} more rows fail" if len(failures) > 1 else ""))
    if report.format == MISMATCHED:
        report.blocking.append(f"{source}: prompt is a message list but chosen/rejected are plain strings: "
                               f"EasyDeL then ignores the prompt column and trains on their common prefix")
    if not rendered:
        return

    prompt_ids, chosen_ids, rejected_ids = _tokenize(tokenizer, rendered)
    eos = tokenizer.eos_token_id
    extra = 1 if eos is not None else 0
    p = [len(x) for x in prompt_ids]
    c = [len(x) + extra for x in chosen_ids]
    r = [len(x) + extra for x in rejected_ids]
    completion = [max(a, b) for a, b in zip(c, r)]
    total = [a + b for a, b in zip(p, completion)]
    n = len(rendered)
    report.pair_lengths = [(item[0], a, b, d) for item, a, b, d in zip(rendered, p, c, r)]
    report.lengths = {"prompt": length_stats(p, o.max_prompt_length),
                      "chosen": length_stats(c, o.max_completion_length),
                      "rejected": length_stats(r, o.max_completion_length),
                      "total": length_stats(total, o.max_length)}
    t = report.truncation
    t.prompt = sum(x > o.max_prompt_length for x in p)
    t.completion = sum(x > o.max_completion_length for x in completion)
    t.total = sum(x > o.max_length for x in total)
    t.any = sum(a > o.max_prompt_length or b > o.max_completion_length or a + b > o.max_length
                for a, b in zip(p, completion))
    t.prompt_share, t.completion_share, t.total_share, t.any_share = (
        round(x / n, 4) for x in (t.prompt, t.completion, t.total, t.any))
    report.suggested = {
        "max_prompt_length": Suggestion(percentile_length(p, 95), percentile_length(p, 99)),
        "max_completion_length": Suggestion(percentile_length(completion, 95), percentile_length(completion, 99)),
        "max_length": Suggestion(percentile_length(total, 95), percentile_length(total, 99)),
    }
    padded = o.max_prompt_length + o.max_completion_length
    report.fill = round(sum(min(a, o.max_prompt_length) + min(b, o.max_completion_length)
                            for a, b in zip(p, c)) / (n * padded), 4)

    pick = next((i for i, (row_no, *_rest) in enumerate(rendered)
                 if row_no not in report.identical_rows and row_no not in report.empty_rows), 0)
    report.example = _example(tokenizer, rendered[pick], prompt_ids[pick], chosen_ids[pick],
                              rejected_ids[pick], o)
    _judge(report, preset, source, n)


def _completion_part(row: dict[str, Any], name: str) -> Any:
    """The completion alone (what follows the shared prompt), for the emptiness check."""
    try:
        return _maybe_extract_prompt(_to_chatml(row))[name]
    except (KeyError, TypeError, IndexError):
        return row.get(name)


def _note_row(rows: list[int], row_no: int) -> None:
    if len(rows) < MAX_LISTED_ROWS:
        rows.append(row_no)


def _tokenize(tokenizer: Any, rendered: list[tuple[int, str, str, str]]) -> tuple[list, list, list]:
    # EasyDeL tokenizes prompt and each completion separately, without special tokens.
    def ids(texts: list[str]) -> list[list[int]]:
        return list(tokenizer(texts, add_special_tokens=False)["input_ids"])

    return (ids([x[1] for x in rendered]), ids([x[2] for x in rendered]), ids([x[3] for x in rendered]))


def _example(tokenizer: Any, item: tuple[int, str, str, str], p_ids: list[int], c_ids: list[int],
             r_ids: list[int], o: Any) -> ExampleRendering:
    row_no, prompt, chosen, rejected = item
    eos_id = tokenizer.eos_token_id
    eos = tokenizer.eos_token if eos_id is not None else ""
    c_all = [*c_ids, eos_id] if eos_id is not None else list(c_ids)
    r_all = [*r_ids, eos_id] if eos_id is not None else list(r_ids)

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False) if ids else ""

    cut_p = len(p_ids) - o.max_prompt_length
    return ExampleRendering(
        row=row_no, prompt_text=prompt, chosen_text=chosen, rejected_text=rejected, eos_token=eos or "",
        prompt_tokens=len(p_ids), chosen_tokens=len(c_all), rejected_tokens=len(r_all),
        prompt_cut=decode(p_ids[:cut_p]) if cut_p > 0 else "",
        chosen_cut=decode(c_all[o.max_completion_length:]),
        rejected_cut=decode(r_all[o.max_completion_length:]))


def _judge(report: PreflightReport, preset: Preset, source: str, n: int) -> None:
    """Sort what was found into blocking problems, warnings and notes (`n`: pairs tokenized)."""
    t, o = report.truncation, preset.orpo
    sug = report.suggested
    scope = "sampled pair" if report.sampled else "pair"
    keep99 = (f"max_prompt_length {sug['max_prompt_length'].p99}, max_completion_length "
              f"{sug['max_completion_length'].p99}, max_length {sug['max_length'].p99} keep 99% whole")
    if t.any == n:
        worst = max((("orpo.max_prompt_length", o.max_prompt_length, t.prompt_share),
                     ("orpo.max_completion_length", o.max_completion_length, t.completion_share),
                     ("orpo.max_length", o.max_length, t.total_share)), key=lambda x: x[2])
        report.blocking.append(f"{source}: {worst[0]}: every {scope} is "
                               f"truncated ({worst[1]} cuts {worst[2]:.0%}); {keep99}")
    elif t.any:
        parts = [f"{share:.1%} at {k} {limit}" for k, limit, share in (
            ("orpo.max_prompt_length", o.max_prompt_length, t.prompt_share),
            ("orpo.max_completion_length", o.max_completion_length, t.completion_share),
            ("orpo.max_length", o.max_length, t.total_share)) if share]
        report.warnings.append(f"{t.any_share:.1%} of {scope}s are truncated ({', '.join(parts)}); {keep99}")
    if report.n_identical == n:
        report.blocking.append(f"{source}: chosen equals rejected in every {scope}: nothing to prefer")
    elif report.n_identical:
        report.warnings.append(f"chosen equals rejected in {report.n_identical} {scope}s "
                               f"(rows {_rows(report.identical_rows)})")
    if report.n_empty == n:
        report.blocking.append(f"{source}: chosen or rejected is empty in every {scope}")
    elif report.n_empty:
        report.warnings.append(f"chosen or rejected is empty in {report.n_empty} {scope}s "
                               f"(rows {_rows(report.empty_rows)})")
    if report.n_empty_prompt:
        report.warnings.append(f"{report.n_empty_prompt} {scope}s have an empty prompt "
                               f"(chosen and rejected share no leading turn or text)")
    if report.format in (EXPLICIT_TEXT, IMPLICIT_TEXT):
        report.warnings.append("prompt, chosen and rejected are plain strings: EasyDeL applies no chat "
                               "template, so the model trains on raw text without role markers")
    if report.format == IMPLICIT_CONVERSATIONAL and "prompt" in report.columns:
        report.notes.append("the plain-string `prompt` column is not used: EasyDeL takes the shared leading "
                            "turn(s) of chosen/rejected as the prompt")
    ex = report.example
    if ex and ex.eos_token and ex.chosen_text.rstrip().endswith(ex.eos_token):
        report.notes.append(f"completions end with {ex.eos_token!r} twice: the chat template closes the turn "
                            f"and EasyDeL appends the EOS {ex.eos_token!r} after it")
    padded = o.max_prompt_length + o.max_completion_length
    if padded != o.max_length:
        report.notes.append(f"EasyDeL pads every sequence to max_prompt_length + max_completion_length = {padded}; "
                            f"orpo.max_length ({o.max_length}) truncates nothing by itself")
    if report.sampled:
        report.notes.append(f"checked a fixed sample of {report.n_pairs} of {report.n_total} pairs")


def _rows(rows: list[int]) -> str:
    return ", ".join(map(str, rows)) + (", ..." if len(rows) >= MAX_LISTED_ROWS else "")


# ---------------------------------------------------------------- text rendering

def visible(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """Newlines and tabs made visible; the middle of a long text elided."""
    shown = text.replace("\n", "↵").replace("\t", "⇥")
    if len(shown) > limit:
        half = limit // 2
        shown = f"{shown[:half]} … {shown[-half:]}"
    return shown


def render_histogram(stats: LengthStats, width: int = 30) -> list[str]:
    """Text bars; bins past the limit (truncated pairs) drawn with ▒."""
    if not stats.histogram:
        return []
    top = max(b.count for b in stats.histogram) or 1
    label_w = len(f"{stats.histogram[-1].lo}-{stats.histogram[-1].hi}")
    out = []
    for b in stats.histogram:
        char = "▒" if b.hi > stats.limit else "█"
        bar = char * max(1 if b.count else 0, round(width * b.count / top))
        label = f"{b.lo}" if b.lo == b.hi else f"{b.lo}-{b.hi}"
        out.append(f"    {label:>{label_w}} │{bar:<{width}} {b.count}")
    return out


def render_text(report: PreflightReport) -> str:
    """The report for a terminal."""
    lines = [f"preflight: {report.preset_name} · {report.source} · split {report.split!r}"]
    if not report.n_pairs:
        lines += [f"BLOCKED: {b}" for b in report.blocking]
        return "\n".join(lines)
    checked = (f"{report.n_pairs} of {report.n_total} pairs (fixed sample)" if report.sampled
               else f"all {report.n_pairs} pairs")
    lines.append(f"checked {checked} with tokenizer {report.tokenizer}")
    lines.append(f"format: {report.format} — {report.format_description}")
    ex = report.example
    if ex:
        eos = f"+{ex.eos_token}" if ex.eos_token else ""
        lines += ["", f"example (row {ex.row}) as EasyDeL tokenizes it; ⟦ ⟧ bound each part, ‖ is the "
                      f"prompt/completion boundary, +{ex.eos_token or 'EOS'} the EOS it appends, ✂ where the "
                      f"current limits cut:"]
        lines.append(f"  prompt   {ex.prompt_tokens:>5} tok  ⟦{_cut_left(ex.prompt_cut, ex.prompt_text)}⟧")
        for name, count, text, cut in (("chosen", ex.chosen_tokens, ex.chosen_text, ex.chosen_cut),
                                       ("rejected", ex.rejected_tokens, ex.rejected_text, ex.rejected_cut)):
            lines.append(f"  {name:<8} {count:>5} tok  ⟦{_cut_right(text, cut, ex.eos_token)}")
        lines.append(f"  chosen sequence: {visible(ex.prompt_text, EXAMPLE_CHARS // 2)}‖"
                     f"{visible(ex.chosen_text, EXAMPLE_CHARS // 2)}{eos}")
    lines += ["", "lengths (tokens)   min    p50    mean    p95    p99    max   limit  truncated"]
    t = report.truncation
    shares = {"prompt": t.prompt_share, "chosen": None, "rejected": None, "total": t.total_share}
    names = {"prompt": "prompt", "chosen": "chosen (+EOS)", "rejected": "rejected (+EOS)", "total": "prompt+longer"}
    for key, s in report.lengths.items():
        share = shares[key] if shares[key] is not None else s.over_limit / max(1, s.n)
        lines.append(f"  {names[key]:<15}{s.min:>5}{s.p50:>7}{s.mean:>8.1f}{s.p95:>7}{s.p99:>7}{s.max:>7}"
                     f"{s.limit:>8}{share:>10.1%}")
    lines.append(f"  pairs truncated in any way: {t.any} ({t.any_share:.1%}); completion cut in "
                 f"{t.completion} ({t.completion_share:.1%}); sequences {report.fill:.0%} real tokens, "
                 f"the rest padding")
    sug = report.suggested
    lines.append("  keep whole:  " + "   ".join(f"{k} {v.p95} (95%) / {v.p99} (99%)" for k, v in sug.items()))
    for key in ("prompt", "chosen", "rejected"):
        s = report.lengths.get(key)
        if s and s.histogram:
            lines += ["", f"  {key} tokens (▒: past the limit {s.limit})"] + render_histogram(s)
    lines += ["", f"pairs: {report.n_identical} chosen==rejected, {report.n_empty} empty, "
                  f"{report.n_prompt_twice} prompt counted twice, {report.n_empty_prompt} empty prompt"]
    lines += [f"note: {x}" for x in report.notes]
    lines += [f"warning: {x}" for x in report.warnings]
    lines += [f"BLOCKED: {x}" for x in report.blocking]
    if report.ok:
        lines.append("ok: nothing blocks a run")
    return "\n".join(lines)


def _cut_left(cut: str, text: str) -> str:
    if not cut:
        return visible(text)
    return visible(cut, EXAMPLE_CHARS // 2) + "✂" + visible(text[len(cut):] if text.startswith(cut) else text)


def _cut_right(text: str, cut: str, eos: str) -> str:
    """A completion and its appended EOS; ✂ where max_completion_length cuts."""
    if not cut:
        return f"{visible(text)}⟧+{eos}" if eos else f"{visible(text)}⟧"
    full = text + eos
    kept = full[: len(full) - len(cut)] if full.endswith(cut) else full
    return f"{visible(kept)}✂{visible(cut, EXAMPLE_CHARS // 2)}⟧"


# ---------------------------------------------------------------- CLI

def run_cli(args: Any) -> int:
    """`orpo-tui preflight --preset FILE [--jsonl]`: 0 when nothing blocks, 2 otherwise."""
    from orpo_tui import preset as presets

    try:
        preset = presets.load(args.preset)
    except presets.PresetError as e:
        print(f"orpo-tui: {e}", file=sys.stderr)
        return 2
    report = run_preflight(preset)
    if getattr(args, "jsonl", False):
        print(report.to_json())
    elif report.n_pairs:
        print(render_text(report))
    if report.blocking:
        more = f" (and {len(report.blocking) - 1} more)" if len(report.blocking) > 1 else ""
        print(f"orpo-tui: {report.blocking[0]}{more}", file=sys.stderr)
        return 2
    return 0
