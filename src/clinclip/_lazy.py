"""Lazy package exports: ``clinclip.text.split_report`` works without importing every module of the part
(and its heavy dependencies) at ``import clinclip.text``."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str], submodules: tuple[str, ...] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package exporting ``names`` (name -> defining module) and its
    ``submodules`` (e.g. ``metrics``) as attributes."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*names, *submodules])

    return __getattr__, __dir__
