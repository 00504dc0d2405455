"""Name -> factory registries: each search method and scheduler is one small module that
registers its factory under its name (optuna's pattern), and the spec names only what is
registered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Factories of one kind (`"search method"`, `"scheduler"`) by name.

    Example:
        >>> samplers: Registry[Callable[[], int]] = Registry("search method")
        >>> @samplers.register("one")
        ... def one() -> int:
        ...     return 1
        >>> samplers["one"](), samplers.names()
        (1, ['one'])
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """A decorator that registers a factory under `name`."""

        def wrap(factory: F) -> F:
            self._factories[name] = factory
            return factory

        return wrap

    def __getitem__(self, name: str) -> F:
        try:
            return self._factories[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}: one of {self.names()}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)
