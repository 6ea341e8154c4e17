"""Shared fixtures. The e2e ones run real tiny ORPO trainings through a real local Ray head.

The head is started once per session, under a private ORPO_TUI_HOME (its
own auth token), and stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "presets" / "tiny-cpu.toml"


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A token-authenticated local Ray head started the way orpo-tui starts it."""
    from orpo_tui.job import cluster

    home = tmp_path_factory.mktemp("orpo-home")
    old = os.environ.get(cluster.HOME_ENV)
    os.environ[cluster.HOME_ENV] = str(home)
    os.environ["ORPO_TUI_ACTOR_LINGER_S"] = "120"
    address = cluster.start_local_head()
    yield address
    try:
        import ray

        ray.shutdown()
    finally:
        cluster.stop_local_head()
        if old is None:
            os.environ.pop(cluster.HOME_ENV, None)
        else:
            os.environ[cluster.HOME_ENV] = old


def tiny_preset(tmp_path: Path, name: str = "tiny-test", **changes) -> Path:
    """The shipped tiny preset with `section.key=value` changes, written under tmp_path."""
    data = tomllib.loads(TINY.read_text())
    data["name"] = name
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data.setdefault(section, {})[key] = value
    data["model"]["id"] = str(REPO / "assets" / "tiny-qwen3")
    data["dataset"]["data_files"] = {k: [str(REPO / "assets" / "preferences" / Path(f).name) for f in v]
                                     for k, v in data["dataset"]["data_files"].items()}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def orpo_tui(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
             **kwargs) -> subprocess.CompletedProcess:
    """Run the real `orpo-tui` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "orpo_tui", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO, **kwargs)
