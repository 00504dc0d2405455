"""What every W&B run of a sweep shares: the mode and whose credentials (`resolve_mode`), what a
run may hold (secrets masked: `redact`), its stable id (`run_id`), how it is opened
(`init_run`), and how W&B's background service is released so a process can exit
(`release_wandb`)."""

from __future__ import annotations

import hashlib
import logging
import netrc
import os
import re
import threading
from typing import Any, Literal
from urllib.parse import urlparse

from sweeps.results.wandb_compat import current_setup, service_process
from sweeps.spec import WandbSpec

logger = logging.getLogger(__name__)

Mode = Literal["online", "offline", "disabled"]
_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|credential|access[_-]?key)", re.I)


def redact(tree: dict[str, Any]) -> dict[str, Any]:
    """A copy of a (flat or nested) mapping with every secret-looking key's value masked."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if _SECRET_KEY.search(str(key)):
            out[key] = "***"
        elif isinstance(value, dict):
            out[key] = redact(value)
        else:
            out[key] = value
    return out


def resolve_mode(mode: Mode | None) -> tuple[Mode, str | None]:
    """The W&B mode to use and, when we chose offline for the user, a line saying so.

    The spec's mode wins, then `WANDB_MODE`; with neither, online needs an API key
    (`WANDB_API_KEY` or `~/.netrc`), and without one the sweep logs offline.
    """
    if mode:
        return mode, None
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env:
        return (
            "offline"
            if env in ("offline", "dryrun")
            else "disabled"
            if env == "disabled"
            else "online"
        ), None
    if os.environ.get("WANDB_API_KEY") or _netrc_has_key():
        return "online", None
    return "offline", "no W&B API key found: logging offline"


def _netrc_has_key() -> bool:
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


# The least time W&B's background service gets to wind down before it is stopped.
SERVICE_TEARDOWN_S = 5.0


def release_wandb(timeout_s: float) -> None:
    """Tears down W&B's background service in this process within `timeout_s`, then stops it.

    W&B waits for its service at exit with no limit, and the service retries a server that
    never answers for as long as it is let: without this a finished sweep's process would hang
    at exit. The next `wandb.init` starts a new service.
    """
    import wandb

    setup = current_setup()
    teardown = threading.Thread(target=wandb.teardown, name="wandb-teardown", daemon=True)
    teardown.start()
    teardown.join(timeout_s)
    if not teardown.is_alive():
        return
    process = service_process(setup)
    if process is not None:
        logger.warning("W&B's service did not stop within %.0f s; stopping it", timeout_s)
        process.kill()
    teardown.join(timeout_s)


def run_id(sweep: str, trial_id: str) -> str:
    """A W&B run id from the sweep name and trial id: stable across retries and resumes."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{sweep}-{trial_id}")
    if len(text) <= 64:
        return text
    return f"{text[:47]}-{hashlib.sha1(text.encode()).hexdigest()[:16]}"


def init_run(
    spec: WandbSpec, sweep: str, run: str, mode: Mode, directory: str | None, **more: Any
) -> Any:
    """`wandb.init` of one run of a sweep (resumed if it exists), grouped by sweep.

    `more` goes to `wandb.init`, except keys that are `wandb.Settings` fields."""
    import wandb

    settings = {k: more.pop(k) for k in list(more) if k in wandb.Settings.model_fields}
    return wandb.init(
        project=spec.project,
        entity=spec.entity,
        group=spec.group or sweep,
        id=run,
        resume="allow",
        dir=directory,
        mode=mode,
        reinit="create_new",
        settings=wandb.Settings(init_timeout=spec.init_timeout_s, silent=True, **settings),
        **more,
    )
