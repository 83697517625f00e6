"""Export of clinclip's own architecture: the image and text towers as standard Hugging Face models plus the
projection heads; a process where clinclip cannot be imported gets the same embeddings (<= 1e-5) following
the exported README's recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from clinclip.models import ClinClipModel
from clinclip.models.export_towers import export_towers
from models_helpers import BLOCK_CLINCLIP, tiny_model_config

TEXTS = ["No pleural effusion.", "There is a small left pleural effusion.", "Cardiomegaly."]

RECIPE = textwrap.dedent("""
    import sys
    import json
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    folder, inputs, output = sys.argv[1:4]
    # the README's recipe, verbatim in substance
    image_encoder = AutoModel.from_pretrained(folder + "/image_encoder").eval()
    text_encoder = AutoModel.from_pretrained(folder + "/text_encoder", add_pooling_layer=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder + "/text_encoder")
    AutoImageProcessor.from_pretrained(folder + "/image_encoder")
    heads = load_file(folder + "/projections.safetensors")
    spec = json.load(open(folder + "/projections.json"))
    with torch.no_grad():
        out = image_encoder(pixel_values=torch.from_numpy(np.load(inputs + ".npy")))
        pooled = out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(1)
        image = pooled.flatten(1) @ heads["image_projection"].T
        t = tokenizer(json.loads(open(inputs + ".json").read()), padding=True, truncation=True,
                      max_length=spec["max_text_length"], return_tensors="pt")
        hidden = text_encoder(**t).last_hidden_state
        if spec["text_pooling"] == "cls":
            pooled = hidden[:, 0]
        else:
            mask = t["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        text = pooled @ heads["text_projection"].T
    np.savez(output, image=image.numpy(), text=text.numpy())
""")


def _export(tmp_path, pooling: str):
    torch.manual_seed(0)
    model = ClinClipModel.from_config(tiny_model_config(graph=True, **{"text.pooling": pooling})).eval()
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "exported"
    out.mkdir()
    export_towers(tmp_path / "model", out)
    pixels = torch.randn(2, 3, 64, 64)
    inputs = tmp_path / "inputs"
    np.save(str(inputs) + ".npy", pixels.numpy())
    (tmp_path / "inputs.json").write_text(json.dumps(TEXTS))
    with torch.no_grad():
        expected = {"image": model.image_features(pixels).numpy(),
                    "text": model.text_features(**model.tokenize(TEXTS)).numpy()}
    return out, inputs, expected


def _check(got, expected):
    np.testing.assert_allclose(got["image"], expected["image"], atol=1e-5)
    np.testing.assert_allclose(got["text"], expected["text"], atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_own_architecture_exports_as_plain_hf_towers(tmp_path, pooling, monkeypatch):
    """The exported README's recipe (plain transformers + safetensors code) gives clinclip's embeddings."""
    import runpy

    out, inputs, expected = _export(tmp_path, pooling)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "image_encoder", "projections.json",
                                                      "projections.safetensors", "text_encoder"]
    assert json.loads((out / "image_encoder" / "config.json").read_text())["model_type"] == "swin"
    assert "from_pretrained" in (out / "README.md").read_text()
    script = tmp_path / "recipe.py"
    script.write_text(RECIPE)
    monkeypatch.setattr(sys, "argv", ["recipe.py", str(out), str(inputs), str(tmp_path / "out.npz")])
    runpy.run_path(str(script), run_name="__main__")
    _check(np.load(tmp_path / "out.npz"), expected)


@pytest.mark.slow
def test_exported_towers_load_where_clinclip_cannot_be_imported(tmp_path):
    out, inputs, expected = _export(tmp_path, "mean")
    script = tmp_path / "plain_hf.py"
    script.write_text(BLOCK_CLINCLIP + RECIPE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", str(script), str(out), str(inputs), str(tmp_path / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _check(np.load(tmp_path / "out.npz"), expected)


def test_clinclip_export_cli_writes_the_towers_of_the_own_architecture(tmp_path):
    from typer.testing import CliRunner

    from clinclip.cli.main import app

    torch.manual_seed(0)
    ClinClipModel.from_config(tiny_model_config(graph=True)).eval().save_pretrained(tmp_path / "model")
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path / "model"), "--format", "hf",
                                      "--out", str(tmp_path / "exported")])
    assert result.exit_code == 0, result.output
    assert {"image_encoder", "text_encoder", "projections.safetensors"} <= {p.name for p in (tmp_path / "exported").iterdir()}
