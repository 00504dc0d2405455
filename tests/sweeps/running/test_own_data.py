"""A new spec written from docs/tasks/text.md (your own data) alone, for a CSV whose columns
are not the defaults, validates and runs through the `sweeps` command (tiny model, smoke size)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sweeps import cli
from sweeps.results.queries import SweepResults
from sweeps.spec import load_spec

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def write_reviews(path: Path, n: int, seed: int) -> None:
    """A CSV with columns `review` and `verdict` (thumbs_up / thumbs_down), made up here."""
    rng = random.Random(seed)
    lines = ["review,verdict"]
    for _ in range(n):
        up = rng.random() < 0.5
        word = rng.choice(("great", "lovely") if up else ("awful", "dull"))
        lines.append(f"the film was {word} really,{'thumbs_up' if up else 'thumbs_down'}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(600)
def test_a_readme_style_spec_for_other_columns_validates_and_runs(
    tiny_model_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "data").mkdir()
    write_reviews(tmp_path / "data" / "reviews.csv", 120, seed=1)
    monkeypatch.chdir(tmp_path)  # docs/tasks/text.md: a relative path is relative to where you run
    (tmp_path / "reviews.yaml").write_text(
        f"""name: reviews
storage_path: ./sweeps
job:
  model: {{name_or_path: "{tiny_model_dir}"}}
  data:
    train: data/reviews.csv
    text_column: review
    label_column: verdict
    label_names: [thumbs_down, thumbs_up]
    validation_fraction: 0.2
    max_length: 16
  training: {{batch_size: 8, monitor: val_accuracy}}
search:
  method: random
  metric: val_accuracy
  mode: max
  space:
    optimizer.lr: {{loguniform: [1.0e-4, 1.0e-3]}}
wandb: {{mode: disabled}}
"""
    )
    assert cli.main(["validate", "reviews.yaml"]) == 0
    # Label order from label_names; 20% of 120 rows carved (stratified, so per label rounded).
    out = capsys.readouterr().out
    assert "labels ['thumbs_down', 'thumbs_up']" in out and "'validation': 24" in out, out

    assert cli.main(["run", "reviews.yaml", "--smoke-test"]) == 0
    spec = load_spec(tmp_path / "reviews.yaml", cli.SMOKE_OVERRIDES)
    rows = SweepResults.of(spec).table()
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows), rows
