"""CLI commands of the 'data' part: ``clinclip prepare DATASET`` (dataset as published -> manifest) and
``clinclip prepare-images`` (manifest -> resized PNGs + updated manifest)."""

from __future__ import annotations

from pathlib import Path

import typer

from clinclip.cli.errors import user_errors
from clinclip.cli.options import OVERWRITE

DATASETS = ("mimic-cxr", "chexpert-plus", "openi", "rsna-pneumonia", "siim-pneumothorax", "vindr-cxr",
            "chestxray14", "chexpert-5x200", "csv")  # the keys of clinclip.data.ADAPTERS (checked in tests)


def _parse_fractions(text: str) -> tuple[float, float, float]:
    from clinclip.errors import ClinclipError

    try:
        parts = [float(x) for x in text.replace("/", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise ClinclipError(f"--split-fractions: expected three numbers like 70/10/20 or 0.7,0.1,0.2, got {text!r}")
    total = sum(parts)
    return tuple(p / total for p in parts) if total > 0 else (0.0, 0.0, 0.0)  # type: ignore[return-value]


@user_errors
def prepare(
    dataset: str = typer.Argument(..., help=f"One of: {', '.join(DATASETS)}."),
    root: Path = typer.Option(..., "--root", help="The dataset's folder, exactly as published."),
    out: Path = typer.Option(..., "--out", help="Manifest to write (.parquet or .csv)."),
    views: str = typer.Option("frontal", "--views", help="frontal (PA/AP) or all (keep laterals)."),
    seed: int = typer.Option(0, "--seed", help="Seed of patient-level splits and of sampling (5x200)."),
    split_fractions: str = typer.Option("70/10/20", "--split-fractions",
                                        help="train/validate/test shares where the dataset has no split."),
    reports_root: Path = typer.Option(None, "--reports-root",
                                      help="mimic-cxr: folder holding files/pNN/pSUBJECT/sSTUDY.txt (default: --root)."),
    labels: Path = typer.Option(None, "--labels", help="chexpert-plus: CheXbert label file (JSON lines or CSV)."),
    mimic_labels: str = typer.Option("chexpert", "--mimic-labels",
                                     help="mimic-cxr: which published label CSV, chexpert or negbio."),
    old_labeler: str = typer.Option(None, "--labeler", hidden=True, help="Old name of --mimic-labels."),
    split_dir: Path = typer.Option(None, "--split-dir",
                                   help="rsna-pneumonia / siim-pneumothorax: folder with GLoRIA's split CSVs."),
    aggregate: str = typer.Option("majority", "--aggregate", help="vindr-cxr train labels: majority or any."),
    per_class: int = typer.Option(200, "--per-class", help="chexpert-5x200: images per class."),
    table: Path = typer.Option(None, "--table", help="csv: the CSV/Parquet file (chexpert-5x200: GLoRIA's CSV)."),
    image_column: str = typer.Option("image_path", "--image-column", help="csv: column with the image path."),
    report_column: str = typer.Option(None, "--report-column", help="csv: column with the report text."),
    label_columns: str = typer.Option("", "--label-columns", help="csv: comma-separated label columns."),
    patient_column: str = typer.Option(None, "--patient-column", help="csv: patient id column."),
    study_column: str = typer.Option(None, "--study-column", help="csv: study id column."),
    split_column: str = typer.Option(None, "--split-column", help="csv: split column (train/validate/test)."),
    view_column: str = typer.Option(None, "--view-column", help="csv: view column (PA/AP/LATERAL/...)."),
    no_check_images: bool = typer.Option(False, "--no-check-images",
                                         help="Do not check that every image file exists (faster on slow disks)."),
    allow_missing_reports: bool = typer.Option(False, "--allow-missing-reports",
                                               help="Keep images whose study has no report (report left blank)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Read a dataset as published into a manifest (one row per image), and list every row not kept,
    with its reason, in <out>.skipped.csv."""
    from rich.console import Console
    from rich.table import Table

    from clinclip.data.adapters import AdapterOptions
    from clinclip.data.prepare import build_manifest

    options = AdapterOptions(
        views=views, seed=seed, split_fractions=_parse_fractions(split_fractions), check_images=not no_check_images,
        require_report=not allow_missing_reports, reports_root=reports_root, labels=labels,
        labeler=old_labeler or mimic_labels,
        split_dir=split_dir, vindr_aggregate=aggregate, per_class=per_class, table=table, image_column=image_column,
        report_column=report_column, label_columns=tuple(c.strip() for c in label_columns.split(",") if c.strip()),
        patient_column=patient_column, study_column=study_column, split_column=split_column, view_column=view_column,
    )
    console = Console()
    with console.status(f"reading {dataset} from {root} ..."):
        summary = build_manifest(dataset, root, out, options, overwrite=overwrite)
    grid = Table(title=f"{dataset}: {summary.manifest}")
    grid.add_column("")
    grid.add_column("rows", justify="right")
    grid.add_row("read", str(summary.rows_read))
    grid.add_row("kept", str(summary.rows_kept))
    for reason, count in summary.skipped.items():
        grid.add_row(f"skipped: {reason}", str(count))
    for note, count in summary.notes.items():
        grid.add_row(f"note: {note}", str(count))
    for split, count in sorted(summary.splits.items()):
        grid.add_row(f"split {split}", str(count))
    console.print(grid)
    console.print(f"labels: {', '.join(summary.pathologies) or '(none)'}")
    console.print(f"skipped rows with reasons: {summary.skipped_file}")


@user_errors
def prepare_images(
    manifest: Path = typer.Option(..., "--manifest", help="A manifest from `clinclip prepare`."),
    out: Path = typer.Option(..., "--out", help="Folder for the resized PNGs (and, by default, the new manifest)."),
    size: int = typer.Option(256, "--size", help="Shorter side in pixels (aspect kept; never enlarged)."),
    workers: int = typer.Option(None, "--workers", help="Worker processes (default: the CPUs this process may use)."),
    out_manifest: Path = typer.Option(None, "--out-manifest", show_default="OUT/manifest.parquet",
                                      help="Updated manifest (.parquet or .csv)."),
    fmt: str = typer.Option("png", "--format", help="png (one file per image) or store (packed, memory-mapped "
                                                    "shards of size x size arrays: the fast loader)."),
    shard_gb: float = typer.Option(1.0, "--shard-gb", help="store: target shard size in GB."),
    clahe: bool = typer.Option(False, "--clahe", help="store: also store each image's CLAHE (clip limit 2, 8x8 "
                                                      "tiles), read by training instead of computing it per crop."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (png: the manifest; store: "
                                                              "rebuild a store of another manifest/size); an input "
                                                              "is never written over."),
) -> None:
    """Decode every image once (DICOM windowing included), shrink it and store it as an 8-bit PNG (or, with
    --format store, as a square array in a packed store), then write a manifest pointing at it. Resumable:
    finished PNGs / shards are kept. Failures are listed by file."""
    from clinclip.errors import ClinclipError

    if fmt not in ("png", "store"):
        raise ClinclipError(f"--format {fmt!r}: expected png or store")
    if fmt == "store":
        from clinclip.data.prepare_store import write_store

        if not shard_gb > 0:
            raise ClinclipError(f"--shard-gb {shard_gb}: expected a number > 0")
        summary = write_store(manifest, out, size=size, workers=workers, out_manifest=out_manifest,
                              shard_bytes=int(shard_gb * 1e9), overwrite=overwrite, clahe=clahe)
    else:
        from clinclip.data.prepare_images import prepare_images as run

        summary = run(manifest, out, size=size, workers=workers, out_manifest=out_manifest, overwrite=overwrite)
    typer.echo(f"{summary.images} images: {summary.written} written, {summary.already_done} already done, "
               f"{len(summary.failed)} failed ({summary.seconds:.1f} s)")
    for source, reason in list(summary.failed.items())[:20]:
        typer.echo(f"  failed: {source}: {reason}")
    if len(summary.failed) > 20:
        typer.echo(f"  ... {len(summary.failed) - 20} more in {summary.skipped_file}")
    typer.echo(f"manifest: {summary.manifest}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.command("prepare")(prepare)
    app.command("prepare-images")(prepare_images)
