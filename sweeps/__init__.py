"""The Tune side of finetune-sweeps: sweep spec, search methods, schedulers, running, CLI.

The Python API is `sweeps.run(spec)` and `sweeps.load(name_or_path)`, which return a `Sweep`
(see `sweeps.api`). Importing the package imports neither Ray nor torch.
"""

from sweeps.api import Sweep, load, run

__all__ = ["Sweep", "load", "run"]
