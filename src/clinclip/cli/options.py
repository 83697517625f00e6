"""Options shared by several commands, declared once so that one concept has one name everywhere.

The labeler options are the same on every command that labels reports (``text label``, ``text prepare``,
``eval retrieval``, ``eval normal-detection``, ``align build``): ``--labeler``, ``--chexbert-checkpoint``,
``--chexbert-tokenizer``, ``--labels-file``, ``--key-column`` (and ``--device`` for the CheXbert model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clinclip.errors import ClinclipError

LABELER_HELP = ("Labeler of the 14 CheXpert observations: rules; chexbert (the published checkpoint: give "
                "--chexbert-checkpoint and --chexbert-tokenizer); csv (labels given with the data: the input's "
                "own 14 columns, or --labels-file joined on --key-column).")


def labeler_option(default: str = "rules", extra: str = "") -> typer.models.OptionInfo:
    return typer.Option(default, "--labeler", help=LABELER_HELP + extra)


CHEXBERT_CHECKPOINT = typer.Option(None, "--chexbert-checkpoint",
                                   help="--labeler chexbert: the published chexbert.pth (read weights-only).")
CHEXBERT_TOKENIZER = typer.Option(None, "--chexbert-tokenizer",
                                  help="--labeler chexbert: a local bert-base-uncased tokenizer folder (its "
                                       "config.json, when present, gives the number of attention heads).")
LABELS_FILE = typer.Option(None, "--labels-file",
                           help="--labeler csv: a table with a key column and the 14 observation columns "
                                "(e.g. mimic-cxr-2.0.0-chexpert.csv.gz); without it, the input's own columns.")
KEY_COLUMN = typer.Option("study_id", "--key-column", help="--labeler csv with --labels-file: the column "
                                                           "joining reports to labels.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace existing outputs (an input is never written over).")


def labeler_spec(labeler: str, chexbert_checkpoint: Optional[Path], chexbert_tokenizer: Optional[Path],
                 device: Optional[str], labels_file: Optional[Path], key_column: str) -> dict:
    """The keyword options of ``clinclip.text.labeler.get_labeler(labeler, **options)`` from the shared
    options, checked before any work: the options a backend needs are there, and no other backend's."""
    from clinclip.text.labeler import BACKENDS

    name = labeler.strip().lower()
    if name not in BACKENDS:
        raise ClinclipError(f"--labeler {labeler!r}: unknown labeler; choose one of {', '.join(BACKENDS)}")
    if name != "chexbert" and (chexbert_checkpoint or chexbert_tokenizer):
        raise ClinclipError(f"--chexbert-checkpoint/--chexbert-tokenizer are for --labeler chexbert, not {name!r}")
    if name != "csv" and labels_file:
        raise ClinclipError(f"--labels-file is for --labeler csv, not {name!r}")
    if name == "chexbert":
        if chexbert_checkpoint is None or chexbert_tokenizer is None:
            raise ClinclipError("--labeler chexbert needs --chexbert-checkpoint (the CheXbert .pth file) and "
                                "--chexbert-tokenizer (a local bert-base-uncased tokenizer folder)")
        for path, option in ((chexbert_checkpoint, "--chexbert-checkpoint"),
                             (chexbert_tokenizer, "--chexbert-tokenizer")):
            if not Path(path).exists():
                raise ClinclipError(f"{path}: {option} not found")
        return {"checkpoint_path": str(chexbert_checkpoint), "tokenizer_dir": str(chexbert_tokenizer),
                "device": device or "cpu"}
    if name == "csv" and labels_file is not None:
        if not Path(labels_file).is_file():
            raise ClinclipError(f"{labels_file}: --labels-file not found")
        return {"path": str(labels_file), "key_column": key_column}
    return {}
