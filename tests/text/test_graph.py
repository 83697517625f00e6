"""Report graphs in the RadGraph schema: rules backend on real reports, radgraph output mapping."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from clinclip.errors import ClinclipError
from clinclip.manifest import validate_graph
from clinclip.text.graph import RadGraphBackend, build_graph, build_graphs, dumps, map_radgraph_label, radgraph_to_graph
from textgen_helpers import iu_frame


def _by_tokens(graph: dict) -> dict:
    ents = graph["entities"]
    return {e["tokens"].lower(): (e["label"], [(kind, ents[t]["tokens"].lower()) for kind, t in e["relations"]])
            for e in ents.values()}


def test_schema_on_real_reports(iu_reports_path):
    from clinclip.text.sentences import split_report

    reports = iu_frame(iu_reports_path, 400)["report"].tolist()
    labels, relations = Counter(), Counter()
    for report in reports:
        graph = build_graph(" ".join(split_report(report)))
        validate_graph(graph)
        again = json.loads(dumps(graph))
        assert again == graph  # JSON round trip
        for ent in graph["entities"].values():
            labels[ent["label"]] += 1
            relations.update(kind for kind, _ in ent["relations"])
    for kind in ("ANAT-DP", "OBS-DP", "OBS-DA", "OBS-U"):
        assert labels[kind] > 20, labels
    for kind in ("modify", "located_at", "suggestive_of"):
        assert relations[kind] > 0, relations
    assert relations["located_at"] > 200


def test_rules_graph_structure():
    g = _by_tokens(build_graph("Small left pleural effusion."))
    assert g["effusion"] == ("OBS-DP", [("located_at", "pleural")])
    assert g["small"] == ("OBS-DP", [("modify", "effusion")])
    assert g["left"] == ("ANAT-DP", [("modify", "pleural")])
    assert g["pleural"][0] == "ANAT-DP"
    assert _by_tokens(build_graph("No pneumothorax."))["pneumothorax"] == ("OBS-DA", [])
    g = _by_tokens(build_graph("Opacity which may represent atelectasis."))
    assert g["opacity"] == ("OBS-DP", [("suggestive_of", "atelectasis")]) and g["atelectasis"][0] == "OBS-U"
    g = _by_tokens(build_graph("Right lower lobe opacity."))
    assert g["opacity"] == ("OBS-DP", [("located_at", "lobe")])
    assert g["right"] == ("ANAT-DP", [("modify", "lobe")])
    # Token indices point into the space-joined token text, across sentences.
    graph = build_graph("No effusion. Mild cardiomegaly.")
    assert graph["text"] == "No effusion . Mild cardiomegaly ."
    ent = next(e for e in graph["entities"].values() if e["tokens"] == "cardiomegaly")
    assert (ent["start_ix"], ent["end_ix"]) == (4, 4)


def test_empty_report_gets_the_placeholder_node():
    for text in ("", "Thank you."):
        graph = build_graph(text)
        assert list(graph["entities"].values()) == [
            {"tokens": "no entity", "label": "EMPTY", "start_ix": -1, "end_ix": -1, "relations": []}]
        validate_graph(graph)
    with pytest.raises(ClinclipError, match="unknown graph backend"):
        build_graphs(["x"], backend="spacy")


# radgraph's README output for RadGraph-XL ("modern-radgraph-xl"), verbatim.
RADGRAPH_XL_SAMPLE = {"0": {
    "text": "No evidence of pneumothorax following chest tube removal .",
    "entities": {
        "1": {"tokens": "pneumothorax", "label": "Observation::definitely absent", "start_ix": 3, "end_ix": 3,
              "relations": []},
        "2": {"tokens": "chest", "label": "Anatomy::definitely present", "start_ix": 5, "end_ix": 5, "relations": []},
        "3": {"tokens": "tube", "label": "Observation::definitely present", "start_ix": 6, "end_ix": 6,
              "relations": [["located_at", "2"]]}},
    "data_source": None, "data_split": "inference"}}
# RadGraph v1 ("radgraph") labels, in the same output structure, ids not in token order.
RADGRAPH_V1_SAMPLE = {"0": {
    "text": "mild pulmonary edema , possibly pneumonia .",
    "entities": {
        "3": {"tokens": "edema", "label": "OBS-DP", "start_ix": 2, "end_ix": 2,
              "relations": [["located_at", "2"], ["suggestive_of", "4"]]},
        "1": {"tokens": "mild", "label": "OBS-DP", "start_ix": 0, "end_ix": 0, "relations": [["modify", "3"]]},
        "2": {"tokens": "pulmonary", "label": "ANAT-DP", "start_ix": 1, "end_ix": 1, "relations": []},
        "4": {"tokens": "pneumonia", "label": "OBS-U", "start_ix": 5, "end_ix": 5, "relations": []}},
    "data_source": None, "data_split": "inference"}}


def test_radgraph_output_mapping():
    xl = radgraph_to_graph(RADGRAPH_XL_SAMPLE["0"])
    validate_graph(xl)
    assert [(e["tokens"], e["label"]) for e in xl["entities"].values()] == [
        ("pneumothorax", "OBS-DA"), ("chest", "ANAT-DP"), ("tube", "OBS-DP")]
    assert xl["entities"]["3"]["relations"] == [["located_at", "2"]]
    v1 = radgraph_to_graph(RADGRAPH_V1_SAMPLE["0"])
    validate_graph(v1)
    assert _by_tokens(v1)["edema"] == ("OBS-DP", [("located_at", "pulmonary"), ("suggestive_of", "pneumonia")])
    assert list(v1["entities"]) == ["1", "2", "3", "4"]  # renumbered in token order
    assert radgraph_to_graph({"text": "", "entities": {}})["entities"]["1"]["label"] == "EMPTY"
    assert map_radgraph_label("Observation::uncertain") == "OBS-U"
    with pytest.raises(ClinclipError, match="unknown entity label"):
        map_radgraph_label("Device::present")


def test_radgraph_backend_missing_package_is_a_clear_error():
    try:
        import radgraph  # noqa: F401
    except ImportError:
        with pytest.raises(ClinclipError, match="pip install radgraph"):
            RadGraphBackend()
    else:
        pytest.skip("radgraph is installed here; the missing-package path cannot be exercised")
