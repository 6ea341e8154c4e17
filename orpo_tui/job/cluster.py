"""Finding or starting the Ray cluster a run lives on.

With no address, orpo-tui starts (or reuses) its own local head, so a run
outlives the process that launched it. Ray 2.54 listens on all interfaces
even when told 127.0.0.1 (measured), so that head requires Ray's token
authentication, with a token file only the user can read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NAMESPACE = "orpo-tui"
HOME_ENV = "ORPO_TUI_HOME"


class ClusterError(RuntimeError):
    """Ray could not be reached or started; str() is the one line to show."""


def home() -> Path:
    return Path(os.environ.get(HOME_ENV, "~/.orpo-tui")).expanduser()


def token_path() -> Path:
    return home() / "ray" / "auth_token"


def _state_path() -> Path:
    return home() / "ray" / "head.json"


def ensure_token() -> Path:
    """The local head's auth token file, created 0600 on first use."""
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path


def _auth_env() -> dict[str, str]:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(ensure_token())}


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def local_head_address() -> str | None:
    """Address of our running local head, if any."""
    try:
        state = json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None
    host, _, port = str(state.get("address", "")).rpartition(":")
    if host and port.isdigit() and _port_open(host, int(port)):
        return state["address"]
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_head() -> str:
    """Start a token-authenticated local Ray head in its own session; returns its address."""
    port = _free_port()
    ray_exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_exe is None:
        raise ClusterError("the `ray` command is not installed next to this Python")
    cpus = max(os.cpu_count() or 1, 4)  # the actor, eformer's launcher task and the trainer each hold a slot
    cmd = [ray_exe, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"]
    env = {**os.environ, **_auth_env()}
    log = home() / "ray" / "head-start.log"
    with open(log, "w") as out:
        # A new session: Ctrl-C in the console must not reach the head, and the head's
        # processes share one process group we can stop without touching other clusters.
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        returncode = proc.wait(timeout=180)
    if returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ClusterError(f"`ray start` failed ({tail[0]}); full output in {log}")
    address = f"127.0.0.1:{port}"
    _state_path().write_text(json.dumps({"address": address, "pgid": proc.pid}))
    return address


def stop_local_head() -> None:
    """Stop the head orpo-tui started (runs on it end; their run folders stay)."""
    try:
        state = json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return
    pgid = state.get("pgid")
    if isinstance(pgid, int) and pgid > 1:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(pgid):
                time.sleep(0.1)  # processes exit asynchronously after the signal
            if not _group_alive(pgid):
                break
    _state_path().unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _use_token_auth() -> None:
    """Point Ray at our head's token. Ray reads its auth settings when first imported, so
    if something in this process imported it already, it is told to read them again."""
    env = _auth_env()
    changed = any(os.environ.get(k) != v for k, v in env.items())
    os.environ.update(env)
    if changed and "ray" in sys.modules:
        import ray

        if not ray.is_initialized():
            try:  # what Ray's own tests do to switch auth settings in a live process
                from ray._raylet import AuthenticationTokenLoader, Config

                AuthenticationTokenLoader.instance().reset_cache()
                Config.initialize("")
            except (ImportError, AttributeError):  # another Ray: connect says if auth fails
                pass


@contextlib.contextmanager
def _streams_with_file_descriptors():
    """Real stdout/stderr for the length of `ray.init`.

    ray.init calls `faulthandler.enable()`, which needs `sys.stderr` to have a file
    descriptor; a full-screen console (Textual) replaces both streams with capture
    objects whose `fileno()` is -1, and ray.init then fails (measured, Ray 2.54).
    """
    swapped = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            usable = stream.fileno() >= 0
        except (AttributeError, OSError, ValueError):
            usable = False
        original = getattr(sys, f"__{name}__")
        if not usable and original is not None:
            swapped[name] = stream
            setattr(sys, name, original)
    try:
        yield
    finally:
        for name, stream in swapped.items():
            setattr(sys, name, stream)


def connect(address: str | None = None, *, start: bool = True) -> tuple[str, bool]:
    """Connect this process to Ray; returns (address, is_local_head)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        _use_token_auth()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address, _is_local(ray.get_runtime_context().gcs_address)
    local = address is None
    if local:
        address = local_head_address()
        if address is None:
            if not start:
                raise ClusterError("no orpo-tui Ray head is running")
            address = start_local_head()
    try:
        with _streams_with_file_descriptors():
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.ERROR,
                     log_to_driver=False, configure_logging=True)
    except Exception as e:  # ConnectionError, AuthenticationError, RuntimeError ...
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ClusterError(f"cannot connect to Ray at {address}: {reason}") from None
    return address, local


def _is_local(address: str) -> bool:
    return address.startswith("127.0.0.1:") and address == local_head_address()
