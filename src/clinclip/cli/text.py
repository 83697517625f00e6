"""CLI commands of the report text pipeline: ``clinclip text ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clinclip.cli import options, text_prepare
from clinclip.cli.errors import user_errors
from clinclip.outputs import check_output

text_app = typer.Typer(help="Report text pipeline: sections, sentences, labels, hard negatives, graphs.",
                       no_args_is_help=True)

_LONG_REPORT_CHARS = 20_000  # a chest X-ray report is ~1-2k characters: longer ones are flagged


@text_app.command("label")
@user_errors
def label(
    input: Path = typer.Option(..., "--input", "-i", help="CSV / Parquet table, or a folder of .txt reports "
                               "(e.g. MIMIC-CXR files/, searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output CSV in the CheXpert labeler's format."),
    text_column: str = typer.Option("report", "--text-column", help="Column holding the report text (tables)."),
    labeler: str = options.labeler_option(),
    sections: bool = typer.Option(True, "--sections/--no-sections",
                                  help="Label FINDINGS + IMPRESSION only (default) or the whole text."),
    chexbert_checkpoint: Optional[Path] = options.CHEXBERT_CHECKPOINT,
    chexbert_tokenizer: Optional[Path] = options.CHEXBERT_TOKENIZER,
    device: str = typer.Option("cpu", "--device", help="--labeler chexbert: torch device (cpu, cuda)."),
    labels_file: Optional[Path] = options.LABELS_FILE,
    key_column: str = options.KEY_COLUMN,
    overwrite: bool = options.OVERWRITE,
) -> None:
    """Label reports with the 14 CheXpert observations.

    Writes the CheXpert labeler's CSV: a Reports column, then the 14 observations in its order, values 1.0 / 0.0 / -1.0 / empty. Every input row gives one output row; rows that could not be read or are empty keep empty labels and are listed at the end.

    Example: clinclip text label --input reports.csv --text-column report --out labels.csv
    """  # noqa: E501 (one line per paragraph: the help text is reflowed by the terminal)
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from clinclip.errors import ClinclipError
    from clinclip.observations import CHEXPERT_LABELER_ORDER, OBSERVATIONS
    from clinclip.text.io import has_error, read_reports
    from clinclip.text.labeler import get_labeler
    from clinclip.text.sections import report_body

    labeler_options = options.labeler_spec(labeler, chexbert_checkpoint, chexbert_tokenizer, device, labels_file,
                                           key_column)
    check_output(out, overwrite=overwrite, inputs=[input, labels_file], suffixes=(".csv",))
    frame = read_reports(input, text_column)
    backend = labeler.strip().lower()
    if backend == "csv" and not labeler_options:  # the input's own 14 columns
        frame["_row"] = range(len(frame))
        labeler_options, key_column = {"frame": frame, "path": input, "key_column": "_row"}, "_row"
    elif backend == "csv" and key_column not in frame.columns and "report_id" in frame.columns:
        frame[key_column] = frame["report_id"]
    elif backend == "csv" and key_column not in frame.columns:
        raise ClinclipError(f"{input}: no key column {key_column!r} to join with {labels_file} (--key-column)")
    labeler_object = get_labeler(backend, **labeler_options)

    problems: list[str] = []
    texts: list[str] = []
    for report, source, error in zip(frame["report"], frame["source"], frame["read_error"]):
        if has_error(error):
            problems.append(f"{source}: {error}")
            texts.append("")
            continue
        if not report.strip():
            problems.append(f"{source}: empty report")
            texts.append("")
            continue
        if len(report) > _LONG_REPORT_CHARS:
            problems.append(f"{source}: unusually long report ({len(report):,} characters; labelled in full, "
                            f"check that it is one report)")
        body = report_body(report) if sections else report
        if not body.strip():
            problems.append(f"{source}: no findings/impression text")
        texts.append(body)

    keys = frame[key_column].astype(str).tolist() if backend == "csv" else texts
    labels = np.full((len(texts), len(OBSERVATIONS)), np.nan)
    batch = 1024
    with tqdm(total=len(texts), desc="labelling", unit="report", disable=len(texts) < 2000) as bar:
        for start in range(0, len(texts), batch):
            chunk = keys[start: start + batch]
            labels[start: start + len(chunk)] = labeler_object.label(chunk)
            bar.update(len(chunk))
    if backend != "csv":
        empty = np.array([not t.strip() for t in texts])
        labels[empty] = np.nan  # nothing to label: blank, not "No Finding"

    table = pd.DataFrame({"Reports": frame["report"].tolist()})
    index = {name: i for i, name in enumerate(OBSERVATIONS)}
    for name in CHEXPERT_LABELER_ORDER:
        table[name] = labels[:, index[name]]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)

    n = len(table)
    positives = int(np.nansum(labels == 1.0))
    typer.echo(f"labelled {n:,} reports with '{backend}' -> {out} ({positives:,} positive labels)")
    missing = getattr(labeler_object, "missing", 0)
    if backend == "csv" and missing:
        typer.secho(f"{missing:,} report(s) have no row in {labels_file or input} (key column {key_column!r}); "
                    f"their labels are empty", fg=typer.colors.YELLOW, err=True)
    if problems:
        typer.secho(f"{len(problems):,} report(s) to check (empty ones keep their row with empty labels):",
                    fg=typer.colors.YELLOW, err=True)
        for line in problems[:50]:
            typer.secho(f"  {line}", err=True)
        if len(problems) > 50:
            typer.secho(f"  ... and {len(problems) - 50:,} more", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``text`` command group to the top-level app."""
    text_prepare.register(text_app)
    app.add_typer(text_app, name="text")
