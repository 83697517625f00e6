"""Writing a phantom collection in the MIMIC-CXR-JPG layout, so that it goes through the real adapter.

```
OUT/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train/validate/test)
OUT/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, PerformedProcedureStepDescription,
                                      ViewPosition, Rows, Columns, StudyDate, StudyTime, ...CodeMeaning
OUT/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, the 14 observations in alphabetical order
OUT/files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg
OUT/files/pNN/pSUBJECT/sSTUDY.txt     the free-text report
OUT/phantom-truth.csv.gz              phantom only: true presence (0/1) of each finding + drawing attributes
OUT/counterfactual/DICOM_ID/ENTITY.jpg phantom only: the same study rendered without one present finding
OUT/phantom-counterfactuals.csv.gz    dicom_id, study_id, subject_id, split, entity, image_path (relative)
```
Counterfactual images (``PhantomConfig.counterfactual_splits``, validate and test by default) are the
study's own image with exactly one finding taken away: anatomy, exposure, noise and every other finding
come from the same random streams, so the pair differs only in that finding's pixels. They let
CXR-Align be scored against the image (CF-order, CF-pair), which no text shortcut can pass.
The CSVs are gzipped with a zero timestamp, so a collection is byte-identical for a given seed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS
from clinclip.outputs import check_output
from clinclip.phantom.render import render_image
from clinclip.phantom.reports import write_report
from clinclip.phantom.studies import PhantomConfig, StudySpec, sample_collection

SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"
TRUTH_CSV = "phantom-truth.csv.gz"
COUNTERFACTUAL_CSV = "phantom-counterfactuals.csv.gz"
COUNTERFACTUAL_DIR = "counterfactual"
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
    n_counterfactuals: int = 0  # images written without one finding (counterfactual/)

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


def entity_slug(entity: str) -> str:
    """File-name form of an observation name ("Pleural Effusion" -> "pleural-effusion")."""
    return entity.lower().replace(" ", "-")


def counterfactual_path(spec: StudySpec, entity: str) -> str:
    """Path of the study's image without ``entity``, relative to the collection folder."""
    return f"{COUNTERFACTUAL_DIR}/{spec.dicom_id}/{entity_slug(entity)}.jpg"


def counterfactual_spec(spec: StudySpec, entity: str) -> StudySpec:
    """The same study with ``entity`` taken away (everything else, its random streams included, kept)."""
    return replace(spec, present=tuple(f for f in spec.present if f != entity),
                   uncertain=tuple(f for f in spec.uncertain if f != entity),
                   attrs={k: v for k, v in spec.attrs.items() if k != entity})


def _write_chunk(args: tuple[list[StudySpec], int, int, int, str, frozenset]) -> list[tuple[int, dict, str]]:
    """Worker: render and write the image and report of each study (and the counterfactual images of
    those in ``with_counterfactuals``); return labels and report text."""
    specs, seed, size, quality, out, with_counterfactuals = args
    out_dir = Path(out)
    results = []
    for spec in specs:
        img_file = image_path(out_dir, spec)
        img_file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_image(spec, seed, size)).save(img_file, quality=quality)
        report, labels = write_report(spec, seed)
        report_path(out_dir, spec).write_text(report)
        if spec.index in with_counterfactuals:
            for entity in spec.present:
                cf_file = out_dir / counterfactual_path(spec, entity)
                cf_file.parent.mkdir(parents=True, exist_ok=True)
                image = render_image(counterfactual_spec(spec, entity), seed, size)
                Image.fromarray(image).save(cf_file, quality=quality)
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
    out_dir = check_output(out_dir, folder=True, overwrite=overwrite)
    if overwrite:  # a previous, larger collection must not leave studies behind
        for folder in ("files", COUNTERFACTUAL_DIR):
            shutil.rmtree(out_dir / folder, ignore_errors=True)
        for name in (SPLIT_CSV, METADATA_CSV, CHEXPERT_CSV, TRUTH_CSV, COUNTERFACTUAL_CSV):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs, split = sample_collection(cfg)

    with_counterfactuals = frozenset(s.index for s in specs
                                     if split[s.subject_id] in cfg.counterfactual_splits and s.present)
    chunk = 32
    jobs = [(specs[i : i + chunk], cfg.seed, cfg.image_size, cfg.jpeg_quality, str(out_dir), with_counterfactuals)
            for i in range(0, len(specs), chunk)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    labels: dict[int, dict] = {}
    reports: dict[int, str] = {}

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
    cf_rows = [{"dicom_id": s.dicom_id, "study_id": s.study_id, "subject_id": s.subject_id,
                "split": split[s.subject_id], "entity": entity, "image_path": counterfactual_path(s, entity)}
               for s in order if s.index in with_counterfactuals for entity in s.present]
    pd.DataFrame(cf_rows, columns=["dicom_id", "study_id", "subject_id", "split", "entity", "image_path"]).to_csv(
        out_dir / COUNTERFACTUAL_CSV, index=False, compression=GZIP)

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
        n_counterfactuals=len(cf_rows),
    )


def load_truth(out_dir: str | Path) -> pd.DataFrame:
    """The phantom's ground truth table (one row per study, true 0/1 per observation)."""
    path = Path(out_dir) / TRUTH_CSV
    if not path.exists():
        raise ClinclipError(f"{path}: not found; is {out_dir} a phantom collection?")
    return pd.read_csv(path, dtype={"dicom_id": str})


def read_counterfactuals(path: str | Path) -> pd.DataFrame:
    """The counterfactual table of a phantom collection (``phantom-counterfactuals.csv.gz``, or the
    collection folder holding it), with ``image_path`` made absolute."""
    path = Path(path)
    if path.is_dir():
        path = path / COUNTERFACTUAL_CSV
    if not path.exists():
        raise ClinclipError(f"{path}: not found; counterfactual images are written by `clinclip phantom`")
    frame = pd.read_csv(path, dtype={"dicom_id": str, "entity": str, "image_path": str, "split": str})
    missing = [c for c in ("dicom_id", "entity", "image_path") if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{path}: column(s) {missing} missing")
    root = path.parent.resolve()
    frame["image_path"] = [str(p) if Path(p).is_absolute() else str(root / p) for p in frame["image_path"]]
    return frame


def spec_from_truth_row(row: pd.Series) -> StudySpec:
    """Rebuild the parts of a StudySpec that the renderer uses, from a row of ``phantom-truth.csv.gz``."""
    present = tuple(name for name in OBSERVATIONS[:-1] if int(row[name]) == 1)
    uncertain = tuple(x for x in str(row["uncertain"]).split("|") if x and x != "nan")
    return StudySpec(index=int(row["index"]), subject_id=int(row["subject_id"]), study_id=int(row["study_id"]),
                     dicom_id=str(row["dicom_id"]), view="PA", present=present, uncertain=uncertain,
                     attrs=json.loads(row["attributes"]))

