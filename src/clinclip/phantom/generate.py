"""Writing a phantom collection in the MIMIC-CXR-JPG layout, so that it goes through the real adapter.

```
OUT/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train/validate/test)
OUT/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, PerformedProcedureStepDescription,
                                      ViewPosition, Rows, Columns, StudyDate, StudyTime, ...CodeMeaning
OUT/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, the 14 observations in alphabetical order
OUT/files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg
OUT/files/pNN/pSUBJECT/sSTUDY.txt     the free-text report
OUT/phantom-truth.csv.gz              phantom only: true presence (0/1) of each finding + drawing attributes
```
The CSVs are gzipped with a zero timestamp, so a collection is byte-identical for a given seed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS
from clinclip.phantom.render import render_image
from clinclip.phantom.reports import write_report
from clinclip.phantom.studies import PhantomConfig, StudySpec, sample_collection

SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"
TRUTH_CSV = "phantom-truth.csv.gz"
METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
CHEXPERT_COLUMNS = ("subject_id", "study_id", *sorted(OBSERVATIONS))
GZIP = {"method": "gzip", "mtime": 0}


@dataclass
class PhantomSummary:
    """What a generation run wrote."""

    out_dir: Path
    n_studies: int
    n_subjects: int
    split_counts: dict[str, int]
    label_counts: dict[str, int]  # studies with each observation positive or uncertain in chexpert.csv
    n_distinct_reports: int  # distinct FINDINGS + IMPRESSION texts (headers such as INDICATION vary)
    seconds: float

    @property
    def studies_per_second(self) -> float:
        return self.n_studies / max(self.seconds, 1e-9)


def study_dir(out_dir: Path, spec: StudySpec) -> Path:
    """``files/pNN/pSUBJECT/sSTUDY`` (NN = the first two digits of the 8-digit subject id)."""
    subject = f"{spec.subject_id:08d}"
    return out_dir / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{spec.study_id}"


def image_path(out_dir: Path, spec: StudySpec) -> Path:
    return study_dir(out_dir, spec) / f"{spec.dicom_id}.jpg"


def report_path(out_dir: Path, spec: StudySpec) -> Path:
    d = study_dir(out_dir, spec)
    return d.parent / f"{d.name}.txt"


def _write_chunk(args: tuple[list[StudySpec], int, int, int, str]) -> list[tuple[int, dict, str]]:
    """Worker: render and write the image and report of each study; return labels and report text."""
    specs, seed, size, quality, out = args
    out_dir = Path(out)
    results = []
    for spec in specs:
        img_file = image_path(out_dir, spec)
        img_file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_image(spec, seed, size)).save(img_file, quality=quality)
        report, labels = write_report(spec, seed)
        report_path(out_dir, spec).write_text(report)
        results.append((spec.index, labels, report))
    return results


def _report_body(report: str) -> str:
    """The FINDINGS/IMPRESSION part of a report, whitespace-normalised (for counting duplicates)."""
    starts = [i for i in (report.find(" FINDINGS:"), report.find(" IMPRESSION:")) if i >= 0]
    return " ".join(report[min(starts):].split()) if starts else " ".join(report.split())


def _metadata_row(spec: StudySpec, size: int) -> dict:
    portable = spec.view == "AP"
    procedure = "CHEST (PORTABLE AP)" if portable else "CHEST (PA AND LAT)"
    return {
        "dicom_id": spec.dicom_id,
        "subject_id": spec.subject_id,
        "study_id": spec.study_id,
        "PerformedProcedureStepDescription": procedure,
        "ViewPosition": spec.view,
        "Rows": size,
        "Columns": size,
        "StudyDate": spec.study_date,
        "StudyTime": spec.study_time,
        "ProcedureCodeSequence_CodeMeaning": procedure,
        "ViewCodeSequence_CodeMeaning": "antero-posterior" if portable else "postero-anterior",
        "PatientOrientationCodeSequence_CodeMeaning": "Recumbent" if portable and "Support Devices" in spec.present else "Erect",
    }


def generate_phantom(
    out_dir: str | Path,
    cfg: PhantomConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> PhantomSummary:
    """Generate ``cfg.n_studies`` phantom studies into ``out_dir`` in the MIMIC-CXR-JPG layout.

    Deterministic in ``cfg`` (the worker count does not change the files). ``workers`` defaults to the
    CPU count (at most 8); 0 or 1 renders in this process."""
    cfg = cfg or PhantomConfig()
    if cfg.n_studies < 1:
        raise ClinclipError(f"phantom: n_studies must be at least 1 (got {cfg.n_studies})")
    if cfg.image_size < 64:
        raise ClinclipError(f"phantom: image_size must be at least 64 px (got {cfg.image_size})")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ClinclipError(f"phantom: output folder {out_dir} is not empty (pass overwrite=True / --overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs, split = sample_collection(cfg)

    chunk = 32
    jobs = [(specs[i : i + chunk], cfg.seed, cfg.image_size, cfg.jpeg_quality, str(out_dir))
            for i in range(0, len(specs), chunk)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    labels: dict[int, dict] = {}
    reports: dict[int, str] = {}
    from tqdm.auto import tqdm

    with tqdm(total=len(specs), desc="phantom studies", unit="study", disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
            with ctx.Pool(workers) as pool:
                for results in pool.imap_unordered(_write_chunk, jobs):
                    for index, lab, text in results:
                        labels[index], reports[index] = lab, text
                    bar.update(len(results))
        else:
            for job in jobs:
                for index, lab, text in _write_chunk(job):
                    labels[index], reports[index] = lab, text
                bar.update(len(job[0]))

    order = sorted(specs, key=lambda s: (s.subject_id, s.study_id))
    split_df = pd.DataFrame(
        [{"dicom_id": s.dicom_id, "study_id": s.study_id, "subject_id": s.subject_id, "split": split[s.subject_id]}
         for s in order]
    )
    split_df.to_csv(out_dir / SPLIT_CSV, index=False, compression=GZIP)
    meta_df = pd.DataFrame([_metadata_row(s, cfg.image_size) for s in order], columns=list(METADATA_COLUMNS))
    meta_df.to_csv(out_dir / METADATA_CSV, index=False, compression=GZIP)
    chex_df = pd.DataFrame(
        [{"subject_id": s.subject_id, "study_id": s.study_id, **labels[s.index]} for s in order],
        columns=list(CHEXPERT_COLUMNS),
    )
    chex_df.to_csv(out_dir / CHEXPERT_CSV, index=False, compression=GZIP)
    truth_rows = []
    for s in order:
        truth = dict(zip(OBSERVATIONS, s.truth_vector().astype(int).tolist()))
        truth_rows.append({"subject_id": s.subject_id, "study_id": s.study_id, "dicom_id": s.dicom_id,
                           "index": s.index, **truth, "uncertain": "|".join(s.uncertain),
                           "attributes": json.dumps(s.attrs, sort_keys=True)})
    pd.DataFrame(truth_rows).to_csv(out_dir / TRUTH_CSV, index=False, compression=GZIP)

    stated = chex_df[list(OBSERVATIONS)]
    counts = {name: int(stated[name].isin([1.0, -1.0]).sum()) for name in OBSERVATIONS}
    return PhantomSummary(
        out_dir=out_dir,
        n_studies=len(specs),
        n_subjects=len(split),
        split_counts={k: int(v) for k, v in split_df["split"].value_counts().items()},
        label_counts=counts,
        n_distinct_reports=len({_report_body(text) for text in reports.values()}),
        seconds=time.perf_counter() - start,
    )


def load_truth(out_dir: str | Path) -> pd.DataFrame:
    """The phantom's ground truth table (one row per study, true 0/1 per observation)."""
    path = Path(out_dir) / TRUTH_CSV
    if not path.exists():
        raise ClinclipError(f"{path}: not found; is {out_dir} a phantom collection?")
    return pd.read_csv(path, dtype={"dicom_id": str})


def spec_from_truth_row(row: pd.Series) -> StudySpec:
    """Rebuild the parts of a StudySpec that the renderer uses, from a row of ``phantom-truth.csv.gz``."""
    present = tuple(name for name in OBSERVATIONS[:-1] if int(row[name]) == 1)
    uncertain = tuple(x for x in str(row["uncertain"]).split("|") if x and x != "nan")
    return StudySpec(index=int(row["index"]), subject_id=int(row["subject_id"]), study_id=int(row["study_id"]),
                     dicom_id=str(row["dicom_id"]), view="PA", present=present, uncertain=uncertain,
                     attrs=json.loads(row["attributes"]))

