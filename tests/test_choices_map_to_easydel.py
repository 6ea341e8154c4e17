"""Every choice a preset offers names a real EasyDeL 0.3.0 enum member (imports easydel: ~10 s)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

CHECK = """
import easydel as ed
from orpo_tui.job.train import _enum
from orpo_tui import preset as P
pairs = [("EasyDeLGradientCheckPointers", P.GRADIENT_CHECKPOINTING), ("AttentionMechanisms", P.ATTENTION_MECHANISMS),
         ("EasyDeLOptimizers", P.OPTIMIZERS), ("EasyDeLSchedulers", P.SCHEDULERS)]
for cls, choices in pairs:
    for c in choices:
        member = _enum(ed, f"{cls}.{c.upper()}")
        assert member.value == ("" if c == "none" and cls.startswith("EasyDeLGrad") else c), (cls, c, member)
print("ok", sum(len(c) for _, c in pairs))
"""


def test_every_preset_choice_is_an_easydel_member():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "ok"
