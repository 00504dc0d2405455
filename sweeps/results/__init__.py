"""Stage 3, results: the sweep's results file, queries over it (the best trial, the trial
table), the live progress line, W&B streaming and the HTML report. Nothing here starts a trial."""
