"""Stage 2, running: placement and preflight, search methods and schedulers, the Tuner, the
per-trial driver, resume, and the runner that wires them."""
