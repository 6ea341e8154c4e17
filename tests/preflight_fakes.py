"""Fakes for the Preflight view: a made-up report (no dataset, no tokenizer) and a fake runner.

`fake_report` builds a `PreflightReport` from fixed token lengths with the
statistics helpers of `orpo_tui.preflight`, so its figures agree with each
other the way a real report's do. `FakePreflight` stands in for
`run_preflight`: it records every preset it is asked about and answers with
the report it was given (or raises), optionally waiting on a gate first.
"""

from __future__ import annotations

import threading

from orpo_tui.preflight import (
    FORMATS,
    IMPLICIT_CONVERSATIONAL,
    ExampleRendering,
    PreflightReport,
    Suggestion,
    Truncation,
    length_stats,
    percentile_length,
)
from orpo_tui.preset import Preset

#: Token lengths of the fake pairs (prompt, chosen, rejected), 40 of them, a few past 32.
PROMPTS = [12 + (i * 7) % 27 for i in range(40)]
CHOSEN = [8 + (i * 5) % 30 for i in range(40)]
REJECTED = [9 + (i * 3) % 22 for i in range(40)]

FAKE_BLOCKING = ("assets/preferences/train.jsonl: orpo.max_prompt_length: every pair is truncated "
                 "(8 cuts 100%); max_prompt_length 37, max_completion_length 37, max_length 73 keep 99% whole")
FAKE_WARNING = "chosen equals rejected in 2 pairs (rows 3, 17)"


def fake_report(*, max_prompt_length: int = 32, max_completion_length: int = 32, max_length: int = 64,
                blocking: list[str] | None = None, warnings: list[str] | None = None) -> PreflightReport:
    """A report of 40 made-up pairs checked at the given limits."""
    p, c, r = PROMPTS, CHOSEN, REJECTED
    completion = [max(a, b) for a, b in zip(c, r)]
    total = [a + b for a, b in zip(p, completion)]
    n = len(p)
    t = Truncation(prompt=sum(x > max_prompt_length for x in p),
                   completion=sum(x > max_completion_length for x in completion),
                   total=sum(x > max_length for x in total))
    t.any = sum(a > max_prompt_length or b > max_completion_length or a + b > max_length
                for a, b in zip(p, completion))
    t.prompt_share, t.completion_share, t.total_share, t.any_share = (
        round(x / n, 4) for x in (t.prompt, t.completion, t.total, t.any))
    example = ExampleRendering(
        row=0, prompt_text="<|im_start|>user\nWhich colour is a pumpkin?<|im_end|>\n<|im_start|>assistant\n",
        chosen_text="Sure! It is orange.<|im_end|>\n", rejected_text="Duh, it is black.<|im_end|>\n",
        eos_token="<|im_end|>", prompt_tokens=19, chosen_tokens=10, rejected_tokens=11,
        rejected_cut="<|im_end|>" if max_completion_length < 11 else "")
    return PreflightReport(
        preset_name="tiny-cpu", source="assets/preferences/train.jsonl", split="train",
        tokenizer="assets/tiny-qwen3", format=IMPLICIT_CONVERSATIONAL,
        format_description=FORMATS[IMPLICIT_CONVERSATIONAL],
        columns=["prompt", "chosen", "rejected"], n_total=n, n_pairs=n,
        max_prompt_length=max_prompt_length, max_completion_length=max_completion_length, max_length=max_length,
        example=example,
        lengths={"prompt": length_stats(p, max_prompt_length), "chosen": length_stats(c, max_completion_length),
                 "rejected": length_stats(r, max_completion_length), "total": length_stats(total, max_length)},
        truncation=t,
        suggested={"max_prompt_length": Suggestion(percentile_length(p, 95), percentile_length(p, 99)),
                   "max_completion_length": Suggestion(percentile_length(completion, 95),
                                                       percentile_length(completion, 99)),
                   "max_length": Suggestion(percentile_length(total, 95), percentile_length(total, 99))},
        fill=0.47, n_identical=2, identical_rows=[3, 17],
        blocking=list(blocking or []),
        warnings=list(warnings if warnings is not None else
                      ([f"{t.any_share:.1%} of pairs are truncated"] if 0 < t.any < n else []) + [FAKE_WARNING]),
        notes=["completions end with '<|im_end|>' twice: the chat template closes the turn and EasyDeL "
               "appends the EOS '<|im_end|>' after it"])


class FakePreflight:
    """A fake `run_preflight`: records each preset, answers with `report_for(preset)`.

    With `gate`, each call waits until the test sets it (the UI must stay live meanwhile).
    """

    def __init__(self, report: PreflightReport | None = None, *, raises: Exception | None = None,
                 gate: threading.Event | None = None, follow_limits: bool = False) -> None:
        self.report = report or fake_report()
        self.raises = raises
        self.gate = gate
        #: Report the preset's own length limits (as a real check would after they change).
        self.follow_limits = follow_limits
        self.calls: list[Preset] = []
        self.started = threading.Event()

    def __call__(self, preset: Preset) -> PreflightReport:
        self.calls.append(preset.copy())
        self.started.set()
        if self.gate is not None and not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        if self.raises is not None:
            raise self.raises
        if self.follow_limits:
            o = preset.orpo
            return fake_report(max_prompt_length=o.max_prompt_length, max_completion_length=o.max_completion_length,
                               max_length=o.max_length, blocking=self.report.blocking,
                               warnings=self.report.warnings)
        return self.report


__all__ = ["FAKE_BLOCKING", "FAKE_WARNING", "FakePreflight", "fake_report"]
