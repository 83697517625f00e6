"""The one configuration system: preset registry, typed dotted overrides, range checks."""

from __future__ import annotations

import pytest

from clinclip.config import (apply_overrides, check_number, coerce, list_presets, load_preset, parse_overrides,
                             register_preset_folder)
from clinclip.errors import ClinclipError
from clinclip.losses import LossConfig, load_variant
from clinclip.train import TrainConfig


def test_bundled_kinds_and_an_application_kind(tmp_path):
    assert {"tiny", "paper"} <= set(list_presets("models")) and "clip-ng-dtcg" in list_presets("variants")
    assert set(list_presets("training")) >= {"tiny", "paper"}
    (tmp_path / "quick.yaml").write_text("steps: 3\nvariants: [clip]\n")
    register_preset_folder("demo-test", tmp_path)
    assert list_presets("demo-test") == ["quick"]
    data, where = load_preset("demo-test", "quick")
    assert data == {"steps": 3, "variants": ["clip"]} and "quick.yaml" in where
    with pytest.raises(ClinclipError, match=r"unknown demo-test preset 'slow'; available: quick"):
        load_preset("demo-test", "slow")
    with pytest.raises(ClinclipError, match="not found"):
        load_preset("demo-test", tmp_path / "absent.yaml")


def test_overrides_are_typed_and_finite():
    assert parse_overrides(["a.b=1", "c= x"]) == {"a.b": "1", "c": " x"}
    with pytest.raises(ClinclipError, match="expected key=value"):
        parse_overrides(["novalue"])
    assert apply_overrides({"text": None}, {"text.pooling": "mean"}, "m") == {"text": {"pooling": "mean"}}
    assert coerce("1e-4", float, "lr", "o") == 1e-4 and coerce("2_000", int, "steps", "o") == 2000
    assert coerce("null", int | None, "steps", "o") is None and coerce("[0.9, 0.98]", tuple[float, float], "b", "o") == (0.9, 0.98)
    for raw, kind in (("nan", float), ("inf", float), ("1.5", int), ("yes please", bool)):
        with pytest.raises(ClinclipError, match=rf"o: k = '{raw}': expected"):
            coerce(raw, kind, "k", "o")


def test_check_number_names_the_key_and_the_range():
    check_number("w", "x", 0.5, low=0, high=1)
    check_number("w", "x", None, low=0, none_means="off")
    for value in (float("nan"), -1, 1.0, True, "0.5"):
        with pytest.raises(ClinclipError, match=r"w: x = .*: expected a finite number >= 0 and < 1"):
            check_number("w", "x", value, low=0, high=1, high_open=True)


@pytest.mark.parametrize("override, message", [
    ("weight_decay=nan", "weight_decay = 'nan': expected a finite number"),
    ("eps=-1", "eps = -1.0: expected a finite number > 0"),
    ("grad_clip=0", "grad_clip = 0.0: expected a finite number > 0, or null"),
    ("data.clahe_p=2", "data.clahe_p = 2.0: expected a finite number >= 0 and <= 1"),
])
def test_training_config_refuses_values_out_of_range(override, message):
    with pytest.raises(ClinclipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.build("clip", [override])


def test_what_a_variant_needs_is_derived_and_a_stated_requires_must_agree():
    data = load_variant("clip-n-dtc").to_dict()
    assert "requires" not in data and load_variant("clip-n-dtc").needed_inputs() == ["hard_negatives", "labels", "neg_labels"]
    assert LossConfig.from_dict({**data, "requires": ["neg_labels", "labels", "hard_negatives"]}).hard_negatives
    with pytest.raises(ClinclipError, match=r"field 'requires': says \['labels'\] but the variant needs"):
        LossConfig.from_dict({**data, "requires": ["labels"]}, "my.yaml")
