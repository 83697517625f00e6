"""Every adapter on its dataset's published layout, built in miniature (real file and column names, real
DICOMs, gzipped CSVs where the real ones are gzipped), checked row by row."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from clinclip.data import ADAPTERS, build_manifest, load_image
from clinclip.data.labels import (
    CXR14_CLASSES,
    CXR14_TO_OBSERVATIONS,
    VINDR_CLASSES,
    VINDR_TO_OBSERVATIONS,
    check_mapping,
)
from clinclip.manifest import BASE_COLUMNS
from clinclip.observations import OBSERVATIONS
from data_helpers import gradient, make_mimic, make_rsna, write_csv, write_dicom, write_png

NAN = float("nan")


def rows_by(frame: pd.DataFrame, key: str = "image_id") -> dict[str, dict]:
    return {str(r[key]): r for r in frame.to_dict("records")}


def skipped(out) -> pd.DataFrame:
    return pd.read_csv(out.with_name(out.name.split(".")[0] + ".skipped.csv"), dtype=str)


# --- MIMIC-CXR-JPG ----------------------------------------------------------------------------------


def test_mimic_cxr_row_by_row(tmp_path):
    root = tmp_path / "mimic-cxr-jpg" / "2.1.0"
    make_mimic(root)
    out = tmp_path / "m.parquet"
    summary = build_manifest("mimic-cxr", root, out)
    m = pd.read_parquet(out)
    assert list(m.columns[:7]) == list(BASE_COLUMNS)
    assert list(m.columns[7:21]) == list(OBSERVATIONS)
    got = rows_by(m)
    assert sorted(got) == ["d1", "d3", "d4"]
    d1, d3, d4 = got["d1"], got["d3"], got["d4"]
    assert d1["image_path"] == str(root / "files/p10/p10000032/s50414267/d1.jpg")
    assert (d1["study_id"], d1["patient_id"], d1["split"], d1["view"]) == ("50414267", "10000032", "train", "PA")
    assert d1["report"].startswith("FINDINGS: Normal chest.")
    assert d1["No Finding"] == 1.0 and math.isnan(d1["Cardiomegaly"])
    assert (d3["view"], d3["Pleural Effusion"], d3["Edema"], d3["Pneumothorax"]) == ("AP", 1.0, -1.0, 0.0)
    assert d4["split"] == "validate" and all(math.isnan(d4[o]) for o in OBSERVATIONS)
    reasons = skipped(out).set_index("key")["reason"].to_dict()
    assert reasons == {"d2": "not a frontal view (keep laterals with --views all)",
                       "d5": "no report for the study (or an empty one)",
                       "d6": "image file not found",
                       "d7": "view unknown (keep such images with --views all)"}
    assert summary.rows_read == 7 and summary.rows_kept == 3
    assert summary.notes == {"images of studies without a row in mimic-cxr-2.0.0-chexpert.csv.gz (kept, labels blank)": 1}


def test_mimic_cxr_separate_reports_root_and_all_views(tmp_path):
    root, reports = tmp_path / "jpg", tmp_path / "reports"
    make_mimic(root, reports_root=reports)
    out = tmp_path / "m.csv"
    build_manifest("mimic-cxr", root, out, reports_root=reports, views="all")
    m = pd.read_csv(out, dtype={"study_id": str, "patient_id": str})
    got = rows_by(m)
    assert sorted(got) == ["d1", "d2", "d3", "d4", "d7"]
    assert got["d2"]["view"] == "LATERAL" and got["d2"]["report"] == got["d1"]["report"]
    # Without --reports-root every report is missing: every image skipped with that reason.
    with_no_reports = tmp_path / "n.parquet"
    summary = build_manifest("mimic-cxr", root, with_no_reports)
    assert summary.rows_kept == 0 and summary.skipped["no report for the study (or an empty one)"] == 4


# --- CheXpert Plus ----------------------------------------------------------------------------------


def make_chexpert_plus(root):
    base = {"section_narrative": "", "section_clinical_history": "cough", "section_history": "",
            "section_comparison": "None.", "section_technique": "", "section_procedure_comments": "",
            "section_end_of_impression": "", "section_summary": "", "section_accession_number": "",
            "age": 61, "sex": "Female", "race": "White", "ethnicity": "Non-Hispanic/Non-Latino",
            "interpreter_needed": "No", "insurance_type": "Medicare", "recent_bmi": 24.1, "deceased": "No",
            "path_to_dcm": ""}
    rows = [
        dict(base, path_to_image="train/patient00001/study1/view1_frontal.jpg", frontal_lateral="Frontal", ap_pa="AP",
             deid_patient_id="patient00001", patient_report_date_order=1, split="train",
             report="FINDINGS: Effusion. IMPRESSION: Left effusion.", section_findings="Effusion.",
             section_impression="Left effusion."),
        dict(base, path_to_image="train/patient00001/study1/view2_lateral.jpg", frontal_lateral="Lateral", ap_pa="",
             deid_patient_id="patient00001", patient_report_date_order=1, split="train",
             report="FINDINGS: Effusion. IMPRESSION: Left effusion.", section_findings="Effusion.",
             section_impression="Left effusion."),
        dict(base, path_to_image="valid/patient64541/study1/view1_frontal.jpg", frontal_lateral="Frontal", ap_pa="PA",
             deid_patient_id="patient64541", patient_report_date_order=1, split="valid",
             report="", section_findings="Clear lungs.", section_impression="Normal."),
        dict(base, path_to_image="train/patient00002/study3/view1_frontal.jpg", frontal_lateral="Frontal", ap_pa="",
             deid_patient_id="patient00002", patient_report_date_order=3, split="train",
             report="", section_findings="", section_impression=""),
    ]
    write_csv(pd.DataFrame(rows), root / "df_chexpert_plus_240401.csv")
    write_png(root / "train/patient00001/study1/view1_frontal.jpg", gradient())
    write_png(root / "train/patient00001/study1/view2_lateral.jpg", gradient())
    write_png(root / "valid/patient64541/study1/view1_frontal.png", gradient())  # the PNG release
    write_png(root / "train/patient00002/study3/view1_frontal.jpg", gradient())
    labels = root / "chexbert_labels" / "impression_fixed.json"
    labels.parent.mkdir(parents=True)
    records = [{"path_to_image": "train/patient00001/study1/view1_frontal.jpg",
                **{o: (1.0 if o == "Pleural Effusion" else None) for o in OBSERVATIONS}},
               {"path_to_image": "valid/patient64541/study1/view1_frontal.jpg",
                **{o: (1.0 if o == "No Finding" else 0.0 if o == "Cardiomegaly" else None) for o in OBSERVATIONS}}]
    labels.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return labels


def test_chexpert_plus_row_by_row(tmp_path):
    root = tmp_path / "chexpert_plus"
    labels = make_chexpert_plus(root)
    out = tmp_path / "c.parquet"
    summary = build_manifest("chexpert-plus", root, out, labels=labels)
    got = rows_by(pd.read_parquet(out))
    assert sorted(got) == ["train_patient00001_study1_view1_frontal", "valid_patient64541_study1_view1_frontal"]
    a = got["train_patient00001_study1_view1_frontal"]
    b = got["valid_patient64541_study1_view1_frontal"]
    assert a["image_path"] == str(root / "train/patient00001/study1/view1_frontal.jpg")
    assert (a["study_id"], a["patient_id"], a["split"], a["view"]) == ("patient00001/study1", "patient00001", "train", "AP")
    assert a["report"] == "FINDINGS: Effusion. IMPRESSION: Left effusion."
    assert a["Pleural Effusion"] == 1.0 and math.isnan(a["No Finding"])
    assert b["image_path"] == str(root / "valid/patient64541/study1/view1_frontal.png")
    assert (b["split"], b["view"]) == ("validate", "PA")
    assert b["report"] == "FINDINGS: Clear lungs. IMPRESSION: Normal."  # rebuilt from the sections
    assert (b["No Finding"], b["Cardiomegaly"]) == (1.0, 0.0)
    assert summary.skipped == {"not a frontal view (keep laterals with --views all)": 1,
                               "no report for the study (or an empty one)": 1}


# --- OpenI ------------------------------------------------------------------------------------------

OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><meta type="rr"/><uId id="CXR{uid}"/>
<MedlineCitation Owner="Indiana University" Status="supplied"><Article PubModel="Electronic-eCollection">
<Abstract><AbstractText Label="COMPARISON">None.</AbstractText><AbstractText Label="INDICATION">Cough.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText><AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation><MeSH><major>normal</major></MeSH>
{images}</eCitation>"""


def _parent_image(image_id):
    return (f'<parentImage id="{image_id}"><figureId>F1</figureId><caption>Xray Chest PA and Lateral</caption>'
            f'<panel type="single"><url>/hadoop/storage/radiology/extract/{image_id}.jpg</url></panel></parentImage>')


def make_openi_xml(root, with_projections=True):
    xml_dir = root / "ecgen-radiology"
    xml_dir.mkdir(parents=True)
    (xml_dir / "1.xml").write_text(OPENI_XML.format(
        uid=1, findings="The cardiac silhouette is normal.", impression="Normal chest x-XXXX.",
        images=_parent_image("CXR1_1_IM-0001-3001") + _parent_image("CXR1_1_IM-0001-4001")))
    (xml_dir / "2.xml").write_text(OPENI_XML.format(
        uid=2, findings="", impression="No active disease.", images=_parent_image("CXR2_IM-0652-1001")))
    (xml_dir / "3.xml").write_text("<eCitation><uId id='CXR3'/>")  # truncated file
    for name in ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001", "CXR2_IM-0652-1001"):
        write_png(root / "NLMCXR_png" / f"{name}.png", gradient())
    if with_projections:
        write_csv(pd.DataFrame({"uid": [1, 1, 2], "filename": ["1_IM-0001-4001.dcm.png", "1_IM-0001-3001.dcm.png",
                                                              "2_IM-0652-1001.dcm.png"],
                                "projection": ["Frontal", "Lateral", "Frontal"]}), root / "indiana_projections.csv")


def test_openi_xml_row_by_row(tmp_path):
    root = tmp_path / "openi"
    make_openi_xml(root)
    out = tmp_path / "o.parquet"
    summary = build_manifest("openi", root, out)
    got = rows_by(pd.read_parquet(out))
    assert sorted(got) == ["CXR1_1_IM-0001-4001", "CXR2_IM-0652-1001"]
    one = got["CXR1_1_IM-0001-4001"]
    assert one["image_path"] == str(root / "NLMCXR_png/CXR1_1_IM-0001-4001.png")
    assert (one["study_id"], one["patient_id"], one["view"]) == ("1", "1", "FRONTAL")
    assert one["report"] == ("COMPARISON: None.\nINDICATION: Cough.\nFINDINGS: The cardiac silhouette is normal.\n"
                             "IMPRESSION: Normal chest x-XXXX.")
    assert got["CXR2_IM-0652-1001"]["report"] == "COMPARISON: None.\nINDICATION: Cough.\nIMPRESSION: No active disease."
    assert one["split"] in ("train", "validate", "test")
    assert [c for c in pd.read_parquet(out).columns if c in OBSERVATIONS] == []  # OpenI gives no CheXpert labels
    reasons = skipped(out).set_index("key")["reason"].to_dict()
    assert reasons.pop("CXR1_1_IM-0001-3001") == "not a frontal view (keep laterals with --views all)"
    assert list(reasons) == ["3"] and reasons["3"].startswith("XML report could not be parsed")
    assert summary.rows_kept == 2 and summary.rows_read == 4


def test_openi_xml_without_projections_needs_views_all(tmp_path):
    root = tmp_path / "openi"
    make_openi_xml(root, with_projections=False)
    summary = build_manifest("openi", root, tmp_path / "o.parquet")
    assert summary.rows_kept == 0 and summary.skipped["view unknown (keep such images with --views all)"] == 3
    assert build_manifest("openi", root, tmp_path / "a.parquet", views="all").rows_kept == 3


def test_openi_kaggle_pair_row_by_row(tmp_path):
    root = tmp_path / "kaggle"
    write_csv(pd.DataFrame({"uid": [1, 2], "MeSH": ["normal", "Opacity/lung"], "Problems": ["normal", "Opacity"],
                            "image": ["Xray Chest PA and Lateral", "Chest, 2 views"],
                            "indication": ["Positive TB test", None], "comparison": [None, None],
                            "findings": ["The heart is normal in size.", "Patchy opacity."],
                            "impression": ["Normal chest", "Pneumonia."]}), root / "indiana_reports.csv")
    write_csv(pd.DataFrame({"uid": [1, 1, 2, 3], "filename": ["1_IM-0001-4001.dcm.png", "1_IM-0001-3001.dcm.png",
                                                             "2_IM-0652-1001.dcm.png", "3_IM-1384-1001.dcm.png"],
                            "projection": ["Frontal", "Lateral", "Frontal", "Frontal"]}), root / "indiana_projections.csv")
    for name in ("1_IM-0001-4001", "1_IM-0001-3001", "2_IM-0652-1001", "3_IM-1384-1001"):
        write_png(root / "images/images_normalized" / f"{name}.dcm.png", gradient())
    out = tmp_path / "k.parquet"
    summary = build_manifest("openi", root, out)
    got = rows_by(pd.read_parquet(out))
    assert sorted(got) == ["1_IM-0001-4001", "2_IM-0652-1001"]
    assert got["1_IM-0001-4001"]["report"] == ("INDICATION: Positive TB test\nFINDINGS: The heart is normal in size.\n"
                                              "IMPRESSION: Normal chest")
    assert got["2_IM-0652-1001"]["image_path"] == str(root / "images/images_normalized/2_IM-0652-1001.dcm.png")
    assert summary.skipped == {"uid absent from indiana_reports.csv": 1,
                               "not a frontal view (keep laterals with --views all)": 1}


# --- RSNA Pneumonia ---------------------------------------------------------------------------------


def test_rsna_pneumonia_row_by_row(tmp_path):
    root = tmp_path / "rsna"
    make_rsna(root)
    out = tmp_path / "r.parquet"
    summary = build_manifest("rsna-pneumonia", root, out, seed=3)
    m = pd.read_parquet(out)
    assert [c for c in m.columns if c in OBSERVATIONS] == ["Lung Opacity", "Pneumonia", "No Finding"]
    got = rows_by(m)
    assert sorted(got) == ["0004cfab-14fd-4e49-80ba-63a80b6bddd6", "003d8fa0-6bf1-40ed-b54c-ac657f8495c5",
                           "00436515-870c-4b36-a041-de91049b9ab4"]
    pos = got["00436515-870c-4b36-a041-de91049b9ab4"]
    assert (pos["Pneumonia"], pos["Lung Opacity"], pos["No Finding"], pos["rsna_ab"], pos["n_boxes"]) == (1, 1, 0, 1, 2)
    assert pos["view"] == "AP" and pos["rsna_class"] == "Lung Opacity"
    other = got["0004cfab-14fd-4e49-80ba-63a80b6bddd6"]
    assert (other["Pneumonia"], other["No Finding"], other["rsna_ab"], other["view"]) == (0, 0, 1, "PA")
    normal = got["003d8fa0-6bf1-40ed-b54c-ac657f8495c5"]
    assert (normal["Pneumonia"], normal["No Finding"], normal["rsna_ab"]) == (0, 1, 0)
    assert normal["image_path"] == str(root / "stage_2_train_images/003d8fa0-6bf1-40ed-b54c-ac657f8495c5.dcm")
    assert summary.skipped == {"image file not found": 1}
    assert load_image(pos["image_path"]).shape == (24, 20)


def test_rsna_gloria_split_files(tmp_path):
    root = tmp_path / "rsna"
    make_rsna(root)
    splits = tmp_path / "gloria"
    write_csv(pd.DataFrame({"patientId": ["00436515-870c-4b36-a041-de91049b9ab4"], "Path": ["x"]}), splits / "train.csv")
    write_csv(pd.DataFrame({"patientId": ["0004cfab-14fd-4e49-80ba-63a80b6bddd6"]}), splits / "val.csv")
    write_csv(pd.DataFrame({"patientId": ["00c0b293-48e7-4e16-ac76-9269ba535a62"]}), splits / "test.csv")
    out = tmp_path / "r.parquet"
    summary = build_manifest("rsna-pneumonia", root, out, split_dir=splits)
    got = rows_by(pd.read_parquet(out))
    assert {k: v["split"] for k, v in got.items()} == {"00436515-870c-4b36-a041-de91049b9ab4": "train",
                                                       "0004cfab-14fd-4e49-80ba-63a80b6bddd6": "validate"}
    assert summary.skipped == {"not in any GLoRIA split file": 1, "image file not found": 1}


# --- SIIM-ACR Pneumothorax --------------------------------------------------------------------------


def test_siim_pneumothorax_row_by_row(tmp_path):
    root = tmp_path / "siim"
    ids = ["1.2.276.0.7230010.3.1.4.8323329.5597.1517875188.959090",
           "1.2.276.0.7230010.3.1.4.8323329.12515.1517875239.501137",
           "1.2.276.0.7230010.3.1.4.8323329.4904.1517875185.355709"]
    (root).mkdir()
    # The published header: "ImageId, EncodedPixels" (a space after the comma); -1 = no pneumothorax.
    (root / "train-rle.csv").write_text(
        "ImageId, EncodedPixels\n"
        f"{ids[0]}, -1\n"
        f"{ids[1]}, 387620 23 996 33 986 43\n"
        f"{ids[1]}, 12 4 1000 5\n"
        f"{ids[2]}, -1\n")
    series = root / "dicom-images-train" / "1.2.276.0.7230010.3.1.2.8323329.5597.1517875188.959089" / "1.2.276.0.7230010.3.1.3.8323329.5597.1517875188.959088"
    write_dicom(series / f"{ids[0]}.dcm", gradient(), view="PA", patient_id="17d405a3-a0d2-4901-b33a-63906aa48d9f")
    write_dicom(root / "dicom-images-train" / "s2" / "r2" / f"{ids[1]}.dcm", gradient(high=4000, dtype=np.uint16),
                photometric="MONOCHROME1", bits_stored=12, view="AP", patient_id="8ab1ffda-8b65-4914-95d6-2e549e328666")
    out = tmp_path / "s.parquet"
    summary = build_manifest("siim-pneumothorax", root, out)
    got = rows_by(pd.read_parquet(out))
    assert sorted(got) == sorted(ids[:2])
    assert got[ids[0]]["Pneumothorax"] == 0.0 and got[ids[1]]["Pneumothorax"] == 1.0
    assert got[ids[0]]["image_path"] == str(series / f"{ids[0]}.dcm")
    assert got[ids[0]]["patient_id"] == "17d405a3-a0d2-4901-b33a-63906aa48d9f" and got[ids[1]]["view"] == "AP"
    assert summary.skipped == {"image file not found": 1} and summary.rows_read == 3
    image = load_image(got[ids[1]]["image_path"])  # MONOCHROME1: the low-value left edge is white
    assert image[0, 0] == 255 and image[0, -1] == 0


# --- VinDr-CXR --------------------------------------------------------------------------------------


def make_vindr(root):
    def row(image_id, rad, **positive):
        return {"image_id": image_id, "rad_id": rad, **{c: positive.get(c, 0) for c in VINDR_CLASSES}}

    write_csv(pd.DataFrame([
        row("000434271f63a053c4128a0ba6352c7f", "R2", **{"Cardiomegaly": 1, "Aortic enlargement": 1}),
        row("000434271f63a053c4128a0ba6352c7f", "R3", **{"Cardiomegaly": 1}),
        row("000434271f63a053c4128a0ba6352c7f", "R6", **{"Nodule/Mass": 1, "Rib fracture": 1}),
        row("00053190460d56c53cc3e57321387478", "R11", **{"No finding": 1}),
        row("00053190460d56c53cc3e57321387478", "R8", **{"No finding": 1}),
        row("00053190460d56c53cc3e57321387478", "R9", **{"No finding": 1}),
    ]), root / "annotations" / "image_labels_train.csv")
    test = pd.DataFrame([row("002a34c58c5b758217ed1f584ccbcfe9", "", **{"Pleural effusion": 1, "Lung tumor": 1})]
                        ).drop(columns="rad_id")
    write_csv(test, root / "annotations" / "image_labels_test.csv")
    write_dicom(root / "train/000434271f63a053c4128a0ba6352c7f.dicom", gradient(high=4095, dtype=np.uint16),
                bits_stored=12, window=(2048, 4096), photometric="MONOCHROME1")
    write_dicom(root / "train/00053190460d56c53cc3e57321387478.dicom", gradient())
    write_dicom(root / "test/002a34c58c5b758217ed1f584ccbcfe9.dicom", gradient(high=4095, dtype=np.uint16),
                bits_stored=12, window=(1024, 2048))


def test_vindr_cxr_row_by_row(tmp_path):
    root = tmp_path / "vindr"
    make_vindr(root)
    out = tmp_path / "v.parquet"
    build_manifest("vindr-cxr", root, out)
    m = pd.read_parquet(out)
    got = rows_by(m)
    a = got["000434271f63a053c4128a0ba6352c7f"]
    assert (a["split"], a["n_readers"]) == ("train", 3)
    # majority of three radiologists: Cardiomegaly (2/3) yes; Aortic enlargement, Nodule/Mass, Rib fracture (1/3) no
    assert (a["Cardiomegaly"], a["Aortic enlargement"], a["Nodule/Mass"], a["Rib fracture"]) == (1, 0, 0, 0)
    assert (a["Lung Lesion"], a["Fracture"], a["No Finding"]) == (0, 0, 0)
    b = got["00053190460d56c53cc3e57321387478"]
    assert (b["No finding"], b["No Finding"]) == (1, 1)
    t = got["002a34c58c5b758217ed1f584ccbcfe9"]
    assert (t["split"], t["Pleural effusion"], t["Pleural Effusion"], t["Lung tumor"], t["Lung Lesion"]) == \
        ("test", 1, 1, 1, 1)
    assert t["image_path"] == str(root / "test/002a34c58c5b758217ed1f584ccbcfe9.dicom")
    # "any" aggregation: one radiologist is enough
    build_manifest("vindr-cxr", root, tmp_path / "any.parquet", vindr_aggregate="any")
    a_any = rows_by(pd.read_parquet(tmp_path / "any.parquet"))["000434271f63a053c4128a0ba6352c7f"]
    assert (a_any["Aortic enlargement"], a_any["Lung Lesion"], a_any["Fracture"]) == (1, 1, 1)
    # the windowed 12-bit test image: window 0..2048 -> the right half saturates at 255
    image = load_image(t["image_path"])
    assert image[0, 0] == 0 and image[0, -1] == 255 and (image[0, 10:] == 255).all()


# --- ChestX-ray14 -----------------------------------------------------------------------------------


def test_chestxray14_row_by_row(tmp_path):
    root = tmp_path / "cxr14"
    entries = [("00000001_000.png", "Cardiomegaly", 0, 1, "PA"), ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1, "PA"),
               ("00000002_000.png", "No Finding", 0, 2, "AP"), ("00000003_000.png", "Effusion|Mass", 0, 3, "PA"),
               ("00000004_000.png", "Hernia|Unicorn", 0, 4, "PA"), ("00000005_000.png", "Nodule", 0, 5, "PA")]
    write_csv(pd.DataFrame([{"Image Index": n, "Finding Labels": f, "Follow-up #": u, "Patient ID": p,
                             "Patient Age": 58, "Patient Gender": "M", "View Position": v, "OriginalImage[Width": 2682,
                             "Height]": 2749, "OriginalImagePixelSpacing[x": 0.143, "y]": 0.143}
                            for n, f, u, p, v in entries]), root / "Data_Entry_2017_v2020.csv")
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000002_000.png\n00000004_000.png\n")
    (root / "test_list.txt").write_text("00000003_000.png\n")
    for i, (name, *_rest) in enumerate(entries):
        write_png(root / f"images_00{1 + i // 3}" / "images" / name, gradient())
    out = tmp_path / "x.parquet"
    summary = build_manifest("chestxray14", root, out)
    m = pd.read_parquet(out)
    got = rows_by(m)
    assert sorted(got) == ["00000001_000", "00000001_001", "00000002_000", "00000003_000"]
    assert got["00000001_000"]["split"] == got["00000001_001"]["split"] in ("train", "validate")  # same patient
    assert got["00000003_000"]["split"] == "test"
    e = got["00000003_000"]
    assert (e["Effusion"], e["Pleural Effusion"], e["Mass"], e["Lung Lesion"], e["Cardiomegaly"]) == (1, 1, 1, 1, 0)
    assert e["image_path"] == str(root / "images_002/images/00000003_000.png")
    assert (got["00000001_001"]["Emphysema"], got["00000001_001"]["study_id"]) == (1, "1_1")
    assert (got["00000002_000"]["No Finding"], got["00000002_000"]["view"]) == (1, "AP")
    assert summary.skipped == {"unknown finding label(s) ['Unicorn'] in Finding Labels": 1,
                               "image in neither train_val_list.txt nor test_list.txt": 1}
    assert set(CXR14_CLASSES) <= set(m.columns)


# --- CheXpert 5x200 ---------------------------------------------------------------------------------


def test_chexpert_5x200_built_from_train_csv(tmp_path):
    root = tmp_path / "CheXpert-v1.0"
    five = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    rows = []
    for k, cls in enumerate(five):
        for j in range(3):  # three eligible studies per class
            rows.append({"Path": f"CheXpert-v1.0/train/patient{k}{j:04d}/study1/view1_frontal.jpg", "Sex": "Male",
                         "Age": 70, "Frontal/Lateral": "Frontal", "AP/PA": "AP",
                         **{o: (1.0 if o == cls else (0.0 if j == 1 else NAN)) for o in OBSERVATIONS}})
    rows.append({"Path": "CheXpert-v1.0/train/patient90000/study1/view1_frontal.jpg", "Frontal/Lateral": "Frontal",
                 "AP/PA": "PA", **{o: (1.0 if o in ("Edema", "Atelectasis") else NAN) for o in OBSERVATIONS}})  # two
    rows.append({"Path": "CheXpert-v1.0/train/patient90001/study1/view1_frontal.jpg", "Frontal/Lateral": "Frontal",
                 "AP/PA": "PA", **{o: (1.0 if o == "Edema" else -1.0 if o == "Lung Opacity" else NAN) for o in OBSERVATIONS}})
    rows.append({"Path": "CheXpert-v1.0/train/patient00000/study1/view2_lateral.jpg", "Frontal/Lateral": "Lateral",
                 "AP/PA": "", **{o: (1.0 if o == "Atelectasis" else NAN) for o in OBSERVATIONS}})
    write_csv(pd.DataFrame(rows), root / "train.csv")
    for r in rows:
        write_png(root.parent / r["Path"], gradient())
    out = tmp_path / "5.parquet"
    summary = build_manifest("chexpert-5x200", root, out, per_class=2, seed=7)
    m = pd.read_parquet(out)
    assert len(m) == 10 and set(m["split"]) == {"test"}
    onehot = m[list(five)].to_numpy()
    assert (onehot.sum(axis=1) == 1).all() and (onehot.sum(axis=0) == 2).all()
    assert not m["patient_id"].isin(["patient90000", "patient90001"]).any()  # two positives / uncertain other
    assert m["image_path"].map(lambda p: p.startswith(str(root / "train"))).all()
    again = build_manifest("chexpert-5x200", root, tmp_path / "again.parquet", per_class=2, seed=7)
    assert pd.read_parquet(tmp_path / "again.parquet")["image_id"].tolist() == m["image_id"].tolist()
    assert again.rows_kept == 10 and summary.notes  # the unsampled rows are noted, not silently dropped


def test_chexpert_5x200_gloria_csv(tmp_path):
    root = tmp_path / "chexpert"
    write_csv(pd.DataFrame([
        {"Path": "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg", "Report Impression": "1. Small effusion.",
         "Atelectasis": 0, "Cardiomegaly": 0, "Consolidation": 0, "Edema": 0, "Pleural Effusion": 1},
        {"Path": "CheXpert-v1.0/train/patient00002/study2/view1_frontal.jpg", "Report Impression": "Cardiomegaly.",
         "Atelectasis": 0, "Cardiomegaly": 1, "Consolidation": 0, "Edema": 1, "Pleural Effusion": 0},
    ]), root / "chexpert_5x200.csv")
    write_png(root / "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg", gradient())
    write_png(root / "CheXpert-v1.0/train/patient00002/study2/view1_frontal.jpg", gradient())
    out = tmp_path / "g.parquet"
    summary = build_manifest("chexpert-5x200", root, out)
    got = rows_by(pd.read_parquet(out))
    assert list(got) == ["CheXpert-v1.0_train_patient00001_study1_view1_frontal"]
    row = next(iter(got.values()))
    assert (row["Pleural Effusion"], row["Edema"], row["report"], row["split"]) == (1, 0, "1. Small effusion.", "test")
    assert summary.skipped == {"not exactly one of the five classes positive": 1}


# --- generic CSV ------------------------------------------------------------------------------------


def test_csv_adapter_row_by_row(tmp_path):
    root = tmp_path / "mine"
    write_png(root / "img" / "a.png", gradient())
    write_png(root / "img" / "b.png", gradient())
    write_png(root / "img" / "c.png", gradient())
    write_csv(pd.DataFrame({"file": ["img/a.png", "img/b.png", "img/c.png", "img/gone.png"],
                            "text": ["No effusion.", "Effusion.", "Lateral.", "x"],
                            "Pleural Effusion": [0, 1, 1, 1], "my_class": [1, 0, 1, 0], "pid": [7, 7, 8, 9],
                            "proj": ["PA", "AP", "LL", "PA"], "fold": ["train", "test", "train", "train"]}),
              root / "table.csv")
    out = tmp_path / "g.parquet"
    summary = build_manifest("csv", root, out, table=root / "table.csv", image_column="file", report_column="text",
                             label_columns=("Pleural Effusion", "my_class"), patient_column="pid",
                             split_column="fold", view_column="proj")
    m = pd.read_parquet(out)
    assert list(m["image_id"]) == ["a", "b"]
    assert list(m["patient_id"]) == ["7", "7"] and list(m["split"]) == ["train", "test"]
    assert list(m["Pleural Effusion"]) == [0, 1] and list(m["my_class"]) == [1, 0]
    assert list(m["report"]) == ["No effusion.", "Effusion."]
    assert summary.skipped == {"image file not found": 1, "not a frontal view (keep laterals with --views all)": 1}


# --- registry and mappings --------------------------------------------------------------------------


def test_registry_and_label_mappings_are_consistent():
    from clinclip.cli.data import DATASETS

    assert tuple(ADAPTERS) == DATASETS
    check_mapping(CXR14_CLASSES, CXR14_TO_OBSERVATIONS)
    check_mapping(VINDR_CLASSES, VINDR_TO_OBSERVATIONS)
    with pytest.raises(ValueError, match="must map from itself"):
        check_mapping(("Pneumonia", "Infiltration"), {"Pneumonia": ("Infiltration",)})


@pytest.mark.parametrize("prompt_file, classes", [
    ("rsna", "RSNA_CLASSES"), ("rsna_ab", "RSNA_CLASSES"), ("siim", "SIIM_CLASSES"), ("vindr", "VINDR_CLASSES"),
    ("cxr14", "CXR14_CLASSES"), ("chexpert_5x200", "CHEXPERT_5X200_CLASSES"),
])
def test_evaluation_prompt_files_name_columns_the_adapters_write(prompt_file, classes):
    # The zero-shot prompt files (evaluation part) refer to manifest columns by name: they must be the
    # dataset classes these adapters write, or evaluation on a prepared dataset would fail.
    from clinclip.data import labels
    from clinclip.evaluate.prompts import load_prompts

    prompts = load_prompts(prompt_file)
    written = set(getattr(labels, classes))
    assert set(prompts.columns) <= written, sorted(set(prompts.columns) - written)
    if prompts.filter_column:
        assert prompts.filter_column in written
