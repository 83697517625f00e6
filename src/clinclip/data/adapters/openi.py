"""OpenI / Indiana University chest X-rays, in either published form:

- NLM's: ``ecgen-radiology/*.xml`` (one report per file: ``AbstractText Label="FINDINGS"`` /
  ``"IMPRESSION"`` / ..., and ``parentImage id="CXR1_1_IM-0001-3001"`` naming the images) with the PNGs
  (``NLMCXR_png/CXR1_1_IM-0001-3001.png``). The XML gives no projection: views come from an
  ``indiana_projections.csv`` in the root when there is one, otherwise they are unknown and only
  ``--views all`` keeps the images.
- Kaggle's: ``indiana_reports.csv`` (uid, MeSH, Problems, image, indication, comparison, findings,
  impression) + ``indiana_projections.csv`` (uid, filename, projection Frontal/Lateral), images anywhere
  under the root (``images/images_normalized/1_IM-0001-4001.dcm.png``).

No CheXpert labels (IU gives MeSH terms; the text pipeline labels the reports). One study per patient;
a seeded patient-level split.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.manifest import as_id
from clinclip.errors import ClinclipError
from clinclip.manifest import read_table

SECTION_ORDER = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")


def compose_report(sections: dict[str, str]) -> str | None:
    """'FINDINGS: ... IMPRESSION: ...' from the labelled sections present (blank ones left out)."""
    parts = [f"{name}: {' '.join(str(sections[name]).split())}" for name in SECTION_ORDER
             if sections.get(name) and str(sections[name]).strip() and str(sections[name]).lower() != "nan"]
    return "\n".join(parts) if parts else None


def _image_tail(name: str) -> str:
    """The 'IM-0001-3001' part of an OpenI image name (both releases share it)."""
    at = name.find("IM-")
    return name[at:] if at >= 0 else name


def image_index(root: Path) -> dict[str, Path]:
    """File name -> path for every PNG/JPEG under ``root`` (the image folders' names vary by release)."""
    index: dict[str, Path] = {}
    for pattern in ("*.png", "*.jpg", "*.jpeg"):
        for path in root.rglob(pattern):
            index.setdefault(path.name, path)
    return index


class OpenIAdapter(DatasetAdapter):
    name = "openi"
    has_reports = True
    description = "OpenI/IU: ecgen-radiology/*.xml + NLMCXR PNGs, or Kaggle indiana_reports/projections CSVs"

    def read(self) -> pd.DataFrame:
        xml_dir = next((d for d in (self.root / "ecgen-radiology", self.root) if any(d.glob("*.xml"))), None)
        reports_csv = self.root / "indiana_reports.csv"
        projections_csv = self.root / "indiana_projections.csv"
        if xml_dir is not None:
            frame = self._read_xml(xml_dir, projections_csv if projections_csv.is_file() else None)
        elif reports_csv.is_file():
            frame = self._read_kaggle(reports_csv, projections_csv)
        else:
            raise ClinclipError(f"openi: neither {self.root / 'ecgen-radiology'}/*.xml nor {reports_csv} found")
        return frame

    def _read_xml(self, xml_dir: Path, projections_csv: Path | None) -> pd.DataFrame:
        views: dict[str, str] = {}
        if projections_csv is not None:
            proj = read_table(projections_csv, ["uid", "filename", "projection"])
            # Kaggle names "1_IM-0001-3001.dcm.png" where NLM has "CXR1_1_IM-0001-3001": match on (uid, "IM-...").
            views = {(str(u).strip(), _image_tail(str(f).split(".")[0])): str(p)
                     for u, f, p in zip(proj["uid"], proj["filename"], proj["projection"])}
        index = image_index(self.root)
        rows = []
        for xml_path in sorted(xml_dir.glob("*.xml")):
            try:
                tree = ET.parse(xml_path)
            except ET.ParseError as err:
                self.skips.add(f"XML report could not be parsed ({err})", xml_path, xml_path.stem)
                continue
            node = tree.getroot()
            uid_node = node.find(".//uId")
            uid = uid_node.get("id") if uid_node is not None else xml_path.stem
            sections = {(t.get("Label") or "").upper(): (t.text or "") for t in node.iter("AbstractText")}
            report = compose_report(sections)
            images = [p.get("id") for p in node.iter("parentImage") if p.get("id")]
            if not images:
                self.skips.add("report lists no image (no parentImage)", xml_path, uid)
            for image_id in images:
                path = index.get(f"{image_id}.png") or index.get(f"{image_id}.jpg")
                rows.append({"image_path": str(path or self.root / "NLMCXR_png" / f"{image_id}.png"),
                             "image_id": image_id, "study_id": uid.removeprefix("CXR"),
                             "patient_id": uid.removeprefix("CXR"), "split": "",
                             "view": views.get((uid.removeprefix("CXR"), _image_tail(image_id)), ""),
                             "report": report})
        self.rows_read = len(rows) + len(self.skips.rows)
        frame = pd.DataFrame(rows, columns=["image_path", "image_id", "study_id", "patient_id", "split", "view", "report"])
        if not views and len(frame):
            self.skips.note("OpenI XML gives no projection and no indiana_projections.csv was found: views unknown")
        return frame

    def _read_kaggle(self, reports_csv: Path, projections_csv: Path) -> pd.DataFrame:
        reports = read_table(reports_csv, ["uid", "findings", "impression"], dtype={"uid": str})
        projections = read_table(projections_csv, ["uid", "filename", "projection"], dtype={"uid": str})
        reports["uid"] = as_id(reports["uid"])
        projections["uid"] = as_id(projections["uid"])
        self.rows_read = len(projections)
        by_uid = {}
        for row in reports.to_dict("records"):
            by_uid[row["uid"]] = compose_report({k.upper(): row.get(k) for k in ("comparison", "indication",
                                                                                  "findings", "impression")})
        index = image_index(self.root)
        frame = pd.DataFrame({
            "image_path": [str(index.get(f, self.root / "images" / "images_normalized" / f)) for f in projections["filename"]],
            "image_id": [str(f).split(".")[0] for f in projections["filename"]],
            "study_id": projections["uid"],
            "patient_id": projections["uid"],
            "split": "",
            "view": projections["projection"],
            "report": projections["uid"].map(by_uid),
        })
        no_report = ~projections["uid"].isin(by_uid.keys())
        frame["report"] = frame["report"].where(~no_report, None)
        return self.skip(frame, no_report.to_numpy(), f"uid absent from {reports_csv.name}", projections_csv)
