"""Which W&B mode a sweep uses, run ids, and masking of secret-looking config keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.results.wandb_runs import redact, resolve_mode, run_id


@pytest.fixture
def no_wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return monkeypatch


def test_no_key_and_no_mode_logs_offline_and_says_so(no_wandb_env: pytest.MonkeyPatch) -> None:
    mode, note = resolve_mode(None)
    assert mode == "offline" and note and "offline" in note


def test_a_key_means_online_and_the_spec_and_env_win(
    no_wandb_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_wandb_env.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode(None) == ("online", None)
    no_wandb_env.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode(None) == ("offline", None)
    assert resolve_mode("disabled") == ("disabled", None)


def test_a_netrc_entry_counts_as_a_key(no_wandb_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n")
    netrc.chmod(0o600)
    no_wandb_env.setenv("NETRC", str(netrc))
    assert resolve_mode(None) == ("online", None)


def test_run_ids_are_stable_valid_and_bounded() -> None:
    assert run_id("laptop", "7d0c3a1e") == "laptop-7d0c3a1e"
    assert run_id("my sweep/1", "a") == "my-sweep-1-a"
    long = run_id("x" * 100, "abc")
    assert len(long) <= 64 and long == run_id("x" * 100, "abc") != run_id("x" * 100, "abd")


def test_secret_looking_keys_are_masked_at_any_depth() -> None:
    config = {"optimizer.lr": 1e-4, "storage.aws_secret_access_key": "s", "x": {"api_key": "k"}}
    assert redact(config) == {
        "optimizer.lr": 1e-4,
        "storage.aws_secret_access_key": "***",
        "x": {"api_key": "***"},
    }
