"""Resolving a dependency's private names by their dotted path, failing loudly with the name.

The compat modules (`trainables/ray_compat.py`, `sweeps/results/wandb_compat.py`) list every
private name they use and resolve each through `resolve_name`, so a release that moves one
fails naming it, in their tests and at the call, instead of silently doing nothing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from typing import Any


class CompatError(RuntimeError):
    """A private name of a dependency is not where it was (an upgrade moved it)."""


def resolve_name(name: str, *, library: str, checked_with: str, home: str) -> Any:
    """The object `name` (`module:attribute.path`) points to in the installed `library`.

    The last attribute of a class also counts when the class only declares it
    (`_name: T` in its body) or its `__init__` sets it on each instance (`self._name = ...`).

    Args:
        name: `module:attribute.path`.
        library: The distribution that holds it (`ray`, `wandb`), named in the error.
        checked_with: The release it was checked against, named in the error.
        home: The compat module that lists it, named in the error.

    Raises:
        CompatError: `"<module>.<path>: not found in <library> <version> ..."`.

    Example:
        >>> resolve_name("json:dumps", library="python", checked_with="3", home="here").__name__
        'dumps'
    """
    module_name, _, path = name.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        parts = path.split(".") if path else []
        for i, part in enumerate(parts):
            if hasattr(found, part):
                found = getattr(found, part)
            elif i == len(parts) - 1 and _declared_on_instances(found, part):
                found = None  # an instance attribute: there is nothing to hand back
            else:
                raise AttributeError(part)
    except (ImportError, AttributeError):
        try:
            installed = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            installed = "(not installed)"
        raise CompatError(
            f"{module_name}.{path}: not found in {library} {installed} (this project was "
            f"checked against {library} {checked_with}; see {home})"
        ) from None
    return found


def _declared_on_instances(cls: Any, attribute: str) -> bool:
    if not inspect.isclass(cls):
        return False
    if attribute in getattr(cls, "__annotations__", {}):
        return True
    try:
        source = inspect.getsource(cls.__init__)
    except (OSError, TypeError):
        return False
    return re.search(rf"\bself\.{re.escape(attribute)}\s*[:=,]", source) is not None
