"""``build_manifest``: run a dataset's adapter and write the manifest plus a side file of skipped rows."""

from __future__ import annotations

import os
from pathlib import Path

from clinclip.data.adapters import ADAPTERS, AdapterOptions, DatasetAdapter, PrepareSummary
from clinclip.errors import ClinclipError
from clinclip.manifest import write_manifest


def skipped_path(out: str | os.PathLike) -> Path:
    """``manifest.parquet`` -> ``manifest.skipped.csv`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.name.split('.')[0]}.skipped.csv")


def get_adapter(dataset: str) -> type[DatasetAdapter]:
    try:
        return ADAPTERS[dataset]
    except KeyError:
        raise ClinclipError(f"unknown dataset {dataset!r}; known: {sorted(ADAPTERS)}") from None


def build_manifest(dataset: str, root: str | os.PathLike, out: str | os.PathLike,
                   options: AdapterOptions | None = None, **kwargs) -> PrepareSummary:
    """Read ``dataset`` (a key of ``ADAPTERS``) from ``root`` as published and write the manifest to ``out``
    (.parquet or .csv) and every skipped row with its reason to ``<out stem>.skipped.csv``."""
    adapter = get_adapter(dataset)(root, options or AdapterOptions.from_kwargs(**kwargs))
    out = Path(out)
    manifest = adapter.manifest()
    write_manifest(manifest, out)
    skipped = skipped_path(out)
    write_manifest(adapter.skips.frame(), skipped)
    return PrepareSummary(
        dataset=dataset, rows_read=adapter.rows_read, rows_kept=len(manifest), skipped=adapter.skips.counts(),
        notes=dict(adapter.skips.notes), splits={k: int(v) for k, v in manifest["split"].value_counts().items()},
        manifest=out, skipped_file=skipped, pathologies=list(adapter.pathologies),
    )
