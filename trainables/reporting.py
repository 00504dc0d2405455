"""The names the per-worker loop reports under: light to import (no torch) for specs and
result readers."""

#: Every metric each report carries (the test_* ones only in the final report, with a test split).
REPORTED_METRICS = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_f1_macro",
    "learning_rate",
    "epoch",
    "step",
    "samples_per_second",
    "step_seconds",
    "test_loss",
    "test_accuracy",
    "test_f1_macro",
)
