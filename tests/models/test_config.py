"""ModelConfig: presets, dict/JSON round trips, validation errors that name the field."""

import json

import pytest

from clinclip.errors import ClinclipError
from clinclip.config import list_presets
from clinclip.models.config import ModelConfig


def test_presets_load_and_describe_the_paper_encoders():
    assert {"tiny", "paper"} <= set(list_presets("models"))
    paper = ModelConfig.from_preset("paper")
    assert paper.image.backbone == "microsoft/swin-tiny-patch4-window7-224"
    assert paper.text.backbone == "emilyalsentzer/Bio_ClinicalBERT"
    assert paper.graph.phrase_encoder == "emilyalsentzer/Bio_ClinicalBERT"
    assert (paper.embed_dim, paper.image.image_size, paper.graph.num_layers) == (512, 224, 2)
    tiny = ModelConfig.from_preset("tiny")
    assert tiny.image.backbone is None and tiny.image.backbone_config["model_type"] == "swin"
    assert tiny.logit_scale_init == pytest.approx(1 / 0.07) and tiny.logit_scale_max == 100.0


def test_dict_and_json_round_trip(tmp_path):
    config = ModelConfig.from_preset("tiny")
    assert ModelConfig.from_dict(config.to_dict()) == config
    path = config.save(tmp_path)
    assert json.loads(path.read_text())["model_type"] == "clinclip"
    assert ModelConfig.load(tmp_path) == config


def test_overrides_use_dotted_keys():
    config = ModelConfig.from_preset("paper", {"image.backbone": "/models/swin", "text.max_text_length": 128})
    assert config.image.backbone == "/models/swin" and config.text.max_text_length == 128
    assert config.with_overrides({"graph.enabled": False}).graph_enabled is False


@pytest.mark.parametrize("override, field", [
    ({"text.pooling": "max"}, "pooling"),
    ({"embed_dim": 0}, "embed_dim"),
    ({"family": "blip"}, "family"),
    ({"image.image_size": 8}, "image_size"),
    ({"image.std": [0.2, 0.0, 0.2]}, "std"),
    ({"graph.entity_types": ["ANAT-DP", "OBS-DP"]}, "entity_types"),
    ({"logit_scale_init": 200.0}, "logit_scale_init"),
    ({"image.image_size": 96}, r"grids are \[24, 12, 6, 3\] a side; each must be >= window_size 4"),
])
def test_invalid_values_name_the_field(override, field):
    with pytest.raises(ClinclipError, match=field):
        ModelConfig.from_preset("tiny", override)


def test_unknown_fields_and_missing_backbones_are_errors(tmp_path):
    data = ModelConfig.from_preset("tiny").to_dict()
    data["image"]["backbone_cfg"] = {}
    with pytest.raises(ClinclipError, match="backbone_cfg"):
        ModelConfig.from_dict(data)
    data = ModelConfig.from_preset("tiny").to_dict()
    data["text"]["backbone_config"] = None
    with pytest.raises(ClinclipError, match="backbone"):
        ModelConfig.from_dict(data)
    with pytest.raises(ClinclipError, match="unknown model preset 'huge'"):
        ModelConfig.from_preset("huge")


def test_load_refuses_other_kinds_of_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(ClinclipError, match="not a clinclip model config"):
        ModelConfig.load(tmp_path)


def test_config_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import clinclip.models.config, sys; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
