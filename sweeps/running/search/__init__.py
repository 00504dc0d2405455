"""Search methods, one module each, behind `make_sampler(name, space, seed)`."""

from sweeps.running.search import gp, grid, random, tpe  # noqa: F401  (registration)
from sweeps.running.search.base import define_by_run, draw_population, make_sampler, methods

__all__ = ["define_by_run", "draw_population", "make_sampler", "methods"]
