"""The one output convention of every command, checked before any work is done.

- An input is never written over (even with ``--overwrite``).
- An existing output is replaced only with ``--overwrite``.
- The format follows the suffix: a suffix the command cannot write is refused, never silently ignored.
- A folder where a file is expected (or a file where a folder is expected) is a one-line error.

``check_output`` raises ``ClinclipError`` naming the path and what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from clinclip.errors import ClinclipError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _suffix_ok(path: Path, suffixes: Sequence[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s.lower()) for s in suffixes)


def check_output(path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable = (),
                 suffixes: Sequence[str] | None = None, folder: bool = False, also: Iterable = (),
                 option: str = "--out") -> Path:
    """Check that ``path`` may be written by a command and return it as a ``Path``.

    ``inputs``: paths the command reads (never written over); ``suffixes``: the file endings the command
    can write (None: any); ``folder``: the output is a folder (it must not hold a previous run's files
    unless ``overwrite``); ``also``: side files written beside ``path`` (a skip list, a Markdown table),
    checked the same way; ``option``: the option's name in the messages."""
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise ClinclipError(f"{path}: {option} is a file; expected a folder")
    else:
        if path.is_dir():
            raise ClinclipError(f"{path}: {option} is a folder; expected a file path"
                                + (f" ending in {' or '.join(suffixes)}" if suffixes else ""))
        if suffixes and not _suffix_ok(path, suffixes):
            raise ClinclipError(f"{path}: {option} must end in {' or '.join(suffixes)} (the format follows the "
                                f"suffix)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ClinclipError(f"{path}: {parent} is a file, not a folder")
            break
    targets = [path] + [Path(p) for p in also]
    for given in inputs:
        if given is None:
            continue
        given = Path(given)
        for target in targets:
            if _same_file(target, given) or target.resolve() == given.resolve():
                raise ClinclipError(f"{target}: is the input {given}; an input is never written over "
                                    f"(choose another {option})")
    for target in targets:
        if overwrite:
            break
        if folder and target == path:
            if path.is_dir() and any(path.iterdir()):
                raise ClinclipError(f"{path}: folder is not empty; pass --overwrite to replace its contents")
        elif target.exists():
            raise ClinclipError(f"{target}: already exists; pass --overwrite to replace it")
    return path
