"""Local process groups for the gloo tests: ranks forked from one server process that imported
torch, the model libraries and the tests' modules once (`multiprocessing`'s forkserver with a
preload), instead of each rank of each test importing them again (~5 CPU-seconds a rank on 2
cores, under the default `spawn`)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as torch_mp

#: What the server imports before it forks a rank: everything the ranks' functions need.
PRELOAD = [
    "torch",
    "torch.distributed",
    "transformers",
    "transformers.modeling_utils",
    "tests.trainables.tasks.test_task_metrics",
    "tests.trainables.tasks.test_ner_reduction",
    "tests.trainables.tasks.test_sft_generation",
]


def context() -> Any:
    """The forkserver context, its preload set (it applies when the server first starts)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def run_ranks(fn: Callable[..., None], args: tuple[Any, ...], nprocs: int = 2) -> None:
    """`torch.multiprocessing.spawn(fn, args, nprocs)` with its ranks forked from the server:
    `fn(rank, *args)` in each, joined; a rank's exception is raised here."""
    context()
    torch_mp.start_processes(fn, args=args, nprocs=nprocs, join=True, start_method="forkserver")
