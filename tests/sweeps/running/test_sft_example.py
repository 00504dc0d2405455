"""`sweeps/examples/sft.yaml`: its model is a Hub id, which this machine cannot resolve, so
`--smoke-test` swaps in the tiny Llama of `trainables.tiny_lm.smoke_model` (on CPU) and the
example's own data, LoRA, generation metrics and promotion run through the real `sweeps run`
path with Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.cli import main, smoke_swaps
from sweeps.spec import load_spec
from trainables.tiny_lm import smoke_model

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "sweeps" / "examples" / "sft.yaml"


def test_the_smoke_test_swaps_only_a_causal_lm_that_is_not_a_local_folder() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.job.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert smoke_swaps(spec.job) == [
        f"job.model.name_or_path={smoke_model()}",
        "job.scaling.gpus_per_worker=0",
    ]
    local = load_spec(EXAMPLE, [f"job.model.name_or_path={smoke_model()}"])
    assert smoke_swaps(local.job) == []
    assert smoke_swaps(load_spec(ROOT / "sweeps" / "examples" / "lora.yaml").job) == []


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
@pytest.mark.timeout(400)
def test_the_sft_example_runs_as_a_smoke_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "run",
            str(EXAMPLE),
            "--smoke-test",
            "--set",
            f"storage_path={tmp_path}",
            "--set",
            f"promote.to={tmp_path / 'models'}",
            # Each smoke evaluation generates from 2 rows, not 8: the path, not the figures.
            "--set",
            "job.training.eval_generate_rows=2",
        ]
    )
    assert status == 0
    assert "replaced by a tiny random Llama on CPU" in capsys.readouterr().out
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "sft-gsm8k" / "results.parquet").to_pylist()
    assert sorted({r["trial_id"]: r["trial_status"] for r in rows}.values()) == [
        "TERMINATED",
        "TERMINATED",
    ]
    reports = [r for r in rows if r.get("val_loss") is not None]
    assert reports and all(0.0 <= r["val_contains"] <= 1.0 for r in reports)
    assert (tmp_path / "models" / "sft-gsm8k" / "v1" / "manifest.json").exists()
