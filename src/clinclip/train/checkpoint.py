"""Training checkpoints: written atomically (``clinclip.files.atomic_path``) and read with
``torch.load(weights_only=True)``, so every entry is a tensor, a number, a string or a list/dict of them --
RNG states included (python, numpy, torch, CUDA; one set per rank)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clinclip.errors import ClinclipError
from clinclip.files import atomic_path

CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def checkpoint_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / LAST


def capture_rng_state() -> dict[str, Any]:
    version, mt_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomic: a crash while writing leaves the previous checkpoint intact."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def keep_newest(path: str | Path, step: int, keep: int) -> list[Path]:
    """After ``path`` (``last.pt``) was written at ``step``: with ``keep`` > 1, give it a step-numbered name as
    well (a hard link, or a copy where links are not possible) and delete all but the ``keep`` newest
    step-numbered checkpoints. Returns the step-numbered checkpoints kept."""
    path = Path(path)
    if keep <= 1:
        return []
    numbered = path.with_name(f"step-{step:08d}.pt")
    numbered.unlink(missing_ok=True)
    try:
        os.link(path, numbered)
    except OSError:
        shutil.copy2(path, numbered)
    kept = sorted(path.parent.glob("step-*.pt"))
    for old in kept[:-keep]:
        old.unlink(missing_ok=True)
    return kept[-keep:]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ClinclipError(f"{path}: no checkpoint to resume from (was the run saved? checkpoints are written "
                            "every save_every steps and at the end)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ClinclipError(f"{path}: cannot read the checkpoint ({err.__class__.__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ClinclipError(f"{path}: not a clinclip training checkpoint (format {CHECKPOINT_FORMAT})")
    return state
