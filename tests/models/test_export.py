"""``clinclip export``: a Hugging Face CLIP / SigLIP fine-tuned by clinclip (CON2 from ``--init``) goes back to a
plain Hugging Face folder that ``transformers.AutoModel`` loads in a process where clinclip cannot be imported,
with the embeddings clinclip computes (<= 1e-5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from clinclip.errors import ClinclipError
from clinclip.models.export import export_model
from clinclip.train import TrainConfig, run_training
from models_helpers import BLOCK_CLINCLIP, save_tiny_clip
from train_helpers import make_prepared_manifest, small_overrides

TEXTS = ["No pleural effusion.", "There is a small left pleural effusion.", "Cardiomegaly."]

# Runs in a fresh interpreter after BLOCK_CLINCLIP: the folder is loaded with transformers alone.
PLAIN_HF = BLOCK_CLINCLIP + textwrap.dedent("""
    import sys
    import json
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder, inputs, output = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = json.loads(open(inputs + ".json").read())
    padding = "max_length" if model.config.model_type == "siglip" else True
    tokens = tokenizer(texts, padding=padding, truncation=True, return_tensors="pt")
    pooled = lambda x: x if isinstance(x, torch.Tensor) else x.pooler_output
    with torch.no_grad():
        image = pooled(model.get_image_features(pixel_values=torch.from_numpy(np.load(inputs + ".npy"))))
        kwargs = {} if model.config.model_type == "siglip" else {"attention_mask": tokens["attention_mask"]}
        text = pooled(model.get_text_features(input_ids=tokens["input_ids"], **kwargs))
    np.savez(output, image=image.numpy(), text=text.numpy(), modules=np.array(
        sorted(m for m in sys.modules if m.split(".")[0] == "clinclip")))
""")


def _plain_hf_embeddings(folder, tmp_path, pixels: np.ndarray) -> dict:
    inputs = tmp_path / "inputs"
    np.save(str(inputs) + ".npy", pixels)
    (tmp_path / "inputs.json").write_text(json.dumps(TEXTS))
    script = tmp_path / "plain_hf.py"
    script.write_text(PLAIN_HF)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", str(script), str(folder), str(inputs), str(tmp_path / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(np.load(tmp_path / "out.npz"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_folder_con2_export_loads_in_plain_transformers_with_the_same_embeddings(kind, tmp_path):
    from clinclip.models import load_model

    manifest = make_prepared_manifest(tmp_path / "data", n_rows=8)
    start = save_tiny_clip(tmp_path / "start", kind)
    values = {k: v for k, v in small_overrides(manifest, tmp_path / "run", steps=3).items()
              if not k.startswith("model.")}
    result = run_training(TrainConfig.from_presets("tiny", "con2", {**values, "init": str(start)}))
    tuned = load_model(result.model_dir).eval()
    out = export_model(result.model_dir, "hf", tmp_path / "exported")
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()}
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys and not any(k.startswith("hf_model.") for k in keys)  # transformers' own names
    assert {k.removeprefix("hf_model.") for k in tuned.state_dict()} >= keys

    pixels = torch.randn(2, 3, tuned.config.image.image_size, tuned.config.image.image_size)
    plain = _plain_hf_embeddings(out, tmp_path, pixels.numpy())
    assert plain["modules"].size == 0
    with torch.no_grad():
        ours_image = tuned.image_features(pixels).numpy()
        ours_text = tuned.text_features(**tuned.tokenize(TEXTS)).numpy()
    np.testing.assert_allclose(plain["image"], ours_image, atol=1e-5, rtol=0)
    np.testing.assert_allclose(plain["text"], ours_text, atol=1e-5, rtol=0)
    # fine-tuning moved the weights: the export is the tuned model, not the start
    from transformers import AutoModel

    original = AutoModel.from_pretrained(str(start)).state_dict()
    exported = AutoModel.from_pretrained(str(out)).state_dict()
    assert any(not torch.equal(original[k], exported[k]) for k in original)


def test_export_refuses_bad_requests(tmp_path):
    from models_helpers import tiny_model_config

    from clinclip.models import ClinClipModel

    hf = save_tiny_clip(tmp_path / "hf", "clip")
    with pytest.raises(ClinclipError, match="already a plain Hugging Face 'clip' folder"):
        export_model(hf, "hf", tmp_path / "x")
    own = ClinClipModel.from_config(tiny_model_config(graph=False)).save_pretrained(tmp_path / "own")
    with pytest.raises(ClinclipError, match="family 'clinclip' to format 'onnx' is not supported"):
        export_model(own, "onnx", tmp_path / "y")
    with pytest.raises(ClinclipError, match="not found"):
        export_model(tmp_path / "nothing", "hf", tmp_path / "z")


def test_export_cli_refuses_to_overwrite(tmp_path):
    from typer.testing import CliRunner

    from clinclip.cli.main import app
    from clinclip.models.hf_clip import HfClipModel

    model_dir = HfClipModel.from_hf_directory(save_tiny_clip(tmp_path / "hf", "clip")).save_pretrained(
        tmp_path / "model")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    runner = CliRunner()
    refused = runner.invoke(app, ["export", "--model", str(model_dir), "--format", "hf", "--out", str(out)])
    assert refused.exit_code == 2 and "--overwrite" in refused.output and (out / "keep.txt").is_file()
    done = runner.invoke(app, ["export", "--model", str(model_dir), "--out", str(out), "--overwrite"])
    assert done.exit_code == 0, done.output
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists()
