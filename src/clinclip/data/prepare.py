"""``build_manifest``: run a dataset's adapter and write the manifest plus a side file of skipped rows."""

from __future__ import annotations

import os
from pathlib import Path

from clinclip.data.adapters import ADAPTERS, AdapterOptions, DatasetAdapter, PrepareSummary
from clinclip.errors import ClinclipError
from clinclip.manifest import write_manifest
from clinclip.outputs import check_output

MANIFEST_SUFFIXES = (".parquet", ".csv")


def skipped_path(out: str | os.PathLike) -> Path:
    """``manifest.parquet`` -> ``manifest.skipped.csv`` beside it (only the format suffix is replaced, so
    ``m.v1.parquet`` and ``m.v2.parquet`` get ``m.v1.skipped.csv`` and ``m.v2.skipped.csv``)."""
    out = Path(out)
    name = out.name
    for suffix in MANIFEST_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(f"{name}.skipped.csv")


def get_adapter(dataset: str) -> type[DatasetAdapter]:
    try:
        return ADAPTERS[dataset]
    except KeyError:
        raise ClinclipError(f"unknown dataset {dataset!r}; known: {sorted(ADAPTERS)}") from None


def _input_files(root, options: AdapterOptions | None) -> list:
    if options is None:
        return [root]
    return [root, options.table, options.labels]


def build_manifest(dataset: str, root: str | os.PathLike, out: str | os.PathLike,
                   options: AdapterOptions | None = None, overwrite: bool = False, **kwargs) -> PrepareSummary:
    """Read ``dataset`` (a key of ``ADAPTERS``) from ``root`` as published and write the manifest to ``out``
    (.parquet or .csv) and every skipped row with its reason to ``<out stem>.skipped.csv``. An existing
    manifest or skip list is replaced only with ``overwrite``; the dataset's own files never are."""
    out = check_output(out, overwrite=overwrite, suffixes=MANIFEST_SUFFIXES, also=[skipped_path(out)],
                       inputs=[p for p in _input_files(root, options) if p is not None])
    adapter = get_adapter(dataset)(root, options or AdapterOptions.from_kwargs(**kwargs))
    manifest = adapter.manifest()
    write_manifest(manifest, out)
    skipped = skipped_path(out)
    write_manifest(adapter.skips.frame(), skipped)
    return PrepareSummary(
        dataset=dataset, rows_read=adapter.rows_read, rows_kept=len(manifest), skipped=adapter.skips.counts(),
        notes=dict(adapter.skips.notes), splits={k: int(v) for k, v in manifest["split"].value_counts().items()},
        manifest=out, skipped_file=skipped, pathologies=list(adapter.pathologies),
    )
