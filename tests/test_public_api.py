"""The parts' packages export their documented functions, and docstrings point to docs in the repository."""

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "clinclip"
REPO = SRC.parents[1]


@pytest.mark.parametrize("package", ["clinclip.text", "clinclip.evaluate", "clinclip.data", "clinclip.models"])
def test_every_exported_name_resolves(package):
    import importlib

    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError):
        getattr(module, "no_such_name")


def test_documented_text_and_evaluate_calls_work_from_the_package():
    import clinclip.evaluate as evaluate
    import clinclip.text as text

    assert text.split_report("Heart size normal. No effusion or pneumothorax.") == [
        "Heart size normal.", "No effusion.", "No pneumothorax."]
    assert evaluate.metrics.roc_auc([0, 1, 1], [0.1, 0.9, 0.8]) == 1.0


def test_no_source_file_points_to_a_file_outside_the_repository():
    offenders = []
    doc_ref = re.compile(r"docs/[\w-]+\.md")
    for path in sorted(SRC.rglob("*")):
        if path.suffix not in (".py", ".yaml") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"\bSPEC(\.md)?\b", text):
            offenders.append(f"{path.relative_to(SRC)}: mentions SPEC")
        for ref in doc_ref.findall(text):
            if not (REPO / ref).is_file():
                offenders.append(f"{path.relative_to(SRC)}: {ref} does not exist")
    assert not offenders, "\n".join(offenders)
