"""Bundled prompt files: they load, follow CXR-CLIP's/GLoRIA's conventions, and bad files fail clearly."""

import pandas as pd
import pytest

from clinclip.errors import ClinclipError
from clinclip.evaluate.classification import apply_prompt_filter
from clinclip.evaluate.prompts import BUNDLED_PROMPT_FILES, load_prompts


@pytest.mark.parametrize("name", BUNDLED_PROMPT_FILES)
def test_every_bundled_prompt_file_loads(name):
    prompts = load_prompts(name)
    assert prompts.classes and all(c.positive and c.negative for c in prompts.classes)


def test_conventions_of_the_bundled_prompts():
    rsna = load_prompts("rsna").classes[0]
    assert rsna.positive == ["Findings suggesting pneumonia."] and rsna.negative == ["No evidence of pneumonia."]
    siim = load_prompts("siim").classes[0]
    assert (siim.positive, siim.negative) == (["Pneumothorax"], ["No Pneumothorax"])
    cxr14 = {c.name: c.column for c in load_prompts("cxr14").classes}
    assert cxr14["Pleural effusion"] == "Effusion" and cxr14["Pleural thickening"] == "Pleural_Thickening"
    # CheXpert 5x200: every severity x subtype x location prompt (GLoRIA's lists), spaces collapsed
    sizes = {c.name: len(c.positive) for c in load_prompts("chexpert_5x200").classes}
    assert sizes == {"Atelectasis": 3 * 7 * 10, "Cardiomegaly": 15, "Consolidation": 4 * 6 * 8, "Edema": 6 * 3,
                     "Pleural Effusion": 6 * 3 * 3}
    atelectasis = load_prompts("chexpert_5x200").classes[0].positive
    assert atelectasis[0] == "subsegmental atelectasis at the mid lung zone"
    assert "mild subsegmental atelectasis at the mid lung zone" in atelectasis


def test_rsna_ab_keeps_only_abnormal_images():
    frame = pd.DataFrame({"Pneumonia": [1, 0, 0], "No Finding": [0, 0, 1]})
    kept, skipped = apply_prompt_filter(frame, load_prompts("rsna_ab"))
    assert kept["Pneumonia"].tolist() == [1, 0]
    assert sum(skipped.values()) == 1


def test_bad_prompt_files_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ranking\nclasses: [X]\n")
    with pytest.raises(ClinclipError, match="bad.yaml.*kind"):
        load_prompts(bad)
    bad.write_text("classes:\n  - {name: X, compose: [[], [a]]}\n")
    with pytest.raises(ClinclipError, match=r"classes\[0\].compose"):
        load_prompts(bad)
    with pytest.raises(ClinclipError, match="unknown prompt file"):
        load_prompts("no_such_dataset")
