"""Labeler backends, agreement with the IU indexers' tags on real reports, and the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clinclip.cli.main import app
from clinclip.errors import ClinclipError
from clinclip.observations import CHEXPERT_LABELER_ORDER, OBSERVATIONS
from clinclip.text.io import read_reports
from clinclip.text.labeler import CsvLabeler, RuleLabeler, get_labeler, positive_agreement


def test_rules_agree_with_iu_tags(iu_reports_path):
    frame = pd.read_csv(iu_reports_path)
    texts = (frame["findings"].fillna("") + " " + frame["impression"].fillna("")).str.strip().tolist()
    gold = {c[len("gold "):]: frame[c].to_numpy(dtype=float) for c in frame.columns if c.startswith("gold ")}
    pred = RuleLabeler().label(texts)
    assert pred.shape == (len(texts), 14)
    rows = positive_agreement(pred, gold)
    macro = float(np.mean([r["f1"] for r in rows]))
    table = "\n".join(f"{r['observation']}: P={r['precision']:.2f} R={r['recall']:.2f} F1={r['f1']:.2f}" for r in rows)
    assert macro >= 0.80, f"macro-F1 {macro:.3f} < 0.80\n{table}"
    assert min(r["f1"] for r in rows) >= 0.6, table


def test_positive_agreement_counts():
    pred = np.full((4, 14), np.nan)
    j = OBSERVATIONS.index("Cardiomegaly")
    pred[:, j] = [1.0, 1.0, -1.0, 0.0]
    rows = positive_agreement(pred, {"Cardiomegaly": [1, 0, 1, np.nan]})
    r = rows[0]
    assert (r["tp"], r["fp"], r["fn"], r["n"]) == (1, 1, 1, 3)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5)


def test_get_labeler_backends(tmp_path):
    assert isinstance(get_labeler("rules"), RuleLabeler)
    with pytest.raises(ClinclipError, match="unknown labeler backend 'bert'.*rules, csv, chexbert"):
        get_labeler("bert")
    with pytest.raises(ClinclipError, match="label file"):
        get_labeler("csv")


def test_csv_labeler(tmp_path):
    table = pd.DataFrame({"study_id": ["s1", "s2"], **{o: [np.nan, 1.0] for o in OBSERVATIONS}})
    table.loc[0, "Pneumothorax"] = -1.0
    path = tmp_path / "chexpert.csv"
    table.to_csv(path, index=False)
    labeler = get_labeler("csv", path=path, key_column="study_id")
    out = labeler.label(["s2", "s1", "missing"])
    assert (out[0] == 1.0).all()
    assert out[1, OBSERVATIONS.index("Pneumothorax")] == -1.0
    assert np.isnan(out[2]).all() and labeler.missing == 1

    # MIMIC: chexpert.csv has numeric study ids, report files are named sSTUDY.txt
    mimic = CsvLabeler.from_frame(pd.DataFrame({"study_id": [50414267], **{o: [1.0] for o in OBSERVATIONS}}))
    assert (mimic.label(["s50414267", "50414267.0"]) == 1.0).all()

    table.loc[1, "Edema"] = 3.0
    table.to_csv(path, index=False)
    with pytest.raises(ClinclipError, match=r"row 3 column 'Edema'"):
        CsvLabeler(path)
    with pytest.raises(ClinclipError, match="lacks column"):
        CsvLabeler.from_frame(table.drop(columns=["Edema"]))


# ------------------------------------------------------------------------------------------------ io / CLI


def _mimic_tree(root: Path) -> Path:
    files = root / "files"
    (files / "p10" / "p10000032").mkdir(parents=True)
    (files / "p11" / "p11000011").mkdir(parents=True)
    (files / "p10" / "p10000032" / "s50414267.txt").write_text(
        "FINAL REPORT\n INDICATION: cough\n FINDINGS: Small left effusion.\n IMPRESSION: No pneumothorax.\n")
    (files / "p11" / "p11000011" / "s53000001.txt").write_text("IMPRESSION: Cannot exclude pneumonia.\n")
    (files / "p11" / "p11000011" / "s53000002.txt").write_text("   \n")
    (files / "p11" / "p11000011" / "s53000003.txt").write_bytes("FINDINGS: Kein Erguß. Mild cardiomegaly.".encode("latin-1"))
    return files


def test_read_reports_folder(tmp_path):
    frame = read_reports(_mimic_tree(tmp_path), text_column=None)
    assert len(frame) == 4
    row = frame.set_index("report_id").loc["s50414267"]
    assert row["patient_id"] == "p10000032" and "Small left effusion" in row["report"]


def test_read_reports_errors(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame({"uid": [1], "text": ["x"]}).to_csv(path, index=False)
    with pytest.raises(ClinclipError, match=r"r\.csv: no column 'report'.*\['uid', 'text'\]"):
        read_reports(path, "report")
    with pytest.raises(ClinclipError, match="input not found"):
        read_reports(tmp_path / "nope.csv", "report")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClinclipError, match="no .txt reports"):
        read_reports(empty, "report")


def test_cli_label_csv(tmp_path):
    path = tmp_path / "reports.csv"
    pd.DataFrame({"uid": [1, 2, 3, 4],
                  "text": ["FINDINGS: Small left effusion. No pneumothorax.", "", "Heart size is normal.",
                           "Mild cardiomegaly. " + "Lungs are clear. " * 3000]}).to_csv(path, index=False)
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(app, ["text", "label", "--input", str(path), "--text-column", "text",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out)
    assert list(labels.columns) == ["Reports", *CHEXPERT_LABELER_ORDER]
    assert len(labels) == 4  # no row lost
    assert labels.loc[0, "Pleural Effusion"] == 1.0 and labels.loc[0, "Pneumothorax"] == 0.0
    assert labels.loc[1, list(CHEXPERT_LABELER_ORDER)].isna().all()  # empty report: empty labels
    assert labels.loc[2, "Cardiomegaly"] == 0.0 and labels.loc[2, "No Finding"] == 1.0
    assert labels.loc[3, "Cardiomegaly"] == 1.0
    assert "row 3: empty report" in result.output
    assert "unusually long report" in result.output  # the 50 kB report is labelled in full and flagged


def test_cli_label_folder_and_errors(tmp_path):
    files = _mimic_tree(tmp_path)
    out = tmp_path / "labels.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["text", "label", "--input", str(files), "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out)
    assert len(labels) == 4
    by_text = {r: i for i, r in enumerate(labels["Reports"].fillna(""))}
    first = labels.iloc[[i for r, i in by_text.items() if "Small left effusion" in r][0]]
    assert first["Pleural Effusion"] == 1.0 and first["Pneumothorax"] == 0.0
    assert math.isnan(first["Pneumonia"])  # INDICATION dropped
    unc = labels.iloc[[i for r, i in by_text.items() if "Cannot exclude" in r][0]]
    assert unc["Pneumonia"] == -1.0
    assert "s53000002.txt: empty report" in result.output

    bad = tmp_path / "r.csv"
    pd.DataFrame({"uid": [1]}).to_csv(bad, index=False)
    result = runner.invoke(app, ["text", "label", "--input", str(bad), "--out", str(out), "--overwrite"])
    assert result.exit_code == 2
    assert "r.csv: no column 'report'" in result.output and "['uid']" in result.output
    result = runner.invoke(app, ["text", "label", "--input", str(files), "--out", str(out), "--labeler", "x"])
    assert result.exit_code == 2 and "unknown labeler" in result.output


def test_cli_label_unreadable_file_is_reported(tmp_path):
    files = _mimic_tree(tmp_path)
    # A dangling link named like a report: listed by the folder walk, unreadable (also as root).
    (files / "p11" / "p11000011" / "s53000009.txt").symlink_to(tmp_path / "gone.txt")
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(app, ["text", "label", "--input", str(files), "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out)
    assert len(labels) == 5  # the unreadable report keeps its row, with empty labels
    assert labels[list(CHEXPERT_LABELER_ORDER)].isna().all(axis=1).sum() == 2  # it and the empty one
    assert "s53000009.txt: unreadable" in result.output


def test_cli_label_csv_backend_with_mimic_chexpert_csv(tmp_path):
    files = _mimic_tree(tmp_path)
    chexpert = tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz"
    table = pd.DataFrame({"subject_id": [10000032], "study_id": [50414267],
                          **{o: [np.nan] for o in OBSERVATIONS}})
    table.loc[0, "Pleural Effusion"] = 1.0
    table.to_csv(chexpert, index=False)
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(app, ["text", "label", "--input", str(files), "--out", str(out),
                                      "--labeler", "csv", "--labels-file", str(chexpert)])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out)
    assert len(labels) == 4
    hit = labels[labels["Reports"].fillna("").str.contains("Small left effusion")]
    assert hit["Pleural Effusion"].tolist() == [1.0]
    assert labels["Pleural Effusion"].notna().sum() == 1  # the other studies are not in the table
    assert "3 report(s) have no row" in result.output
