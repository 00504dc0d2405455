"""The Tune side of finetune-sweeps: sweep spec, search methods, schedulers, running, CLI."""
