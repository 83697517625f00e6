"""clinclip folders as Hugging Face models: AutoConfig / AutoModel after ``import clinclip``, a model card in
every saved folder, hub names, push_to_hub, and folders that travel (no machine paths, usual permissions)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clinclip.errors import ClinclipError
from clinclip.models import ClinClipModel, init_from
from models_helpers import save_tiny_clip, tiny_model_config

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = ClinClipModel.from_config(tiny_model_config(graph=False)).eval()
    directory = model.save_pretrained(tmp_path_factory.mktemp("m") / "model", card={
        "variant": "clip-ng-dtcg", "steps": 500, "data": "prepared.parquet", "data_fingerprint": "ab12" * 16,
        "metrics": {"cxr_align_a": 0.858, "cxr_align_a_ci": [0.81, 0.90]}})
    return model, directory


def test_model_card_is_written_and_read_back(saved):
    model, directory = saved
    card = (directory / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: clinclip" in card
    for text in ("variant `clip-ng-dtcg`", "| steps | `500` |", "ab12ab12", "| cxr_align_a | 0.858 (0.810–0.900) |"):
        assert text in card, text
    back = ClinClipModel.from_pretrained(directory)
    assert back.card_info["steps"] == 500 and back.card_info["metrics"]["cxr_align_a"] == 0.858
    bare = ClinClipModel.from_config(tiny_model_config(graph=False)).save_pretrained(directory.parent / "bare")
    assert "No training run recorded" in (bare / "README.md").read_text()


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "TRANSFORMERS_VERBOSITY": "warning"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["clinclip first", "transformers first"])
def test_auto_classes_load_a_clinclip_folder_after_import_clinclip(saved, tmp_path, order):
    """In a fresh interpreter (both import orders); the in-process check below runs in the default suite."""
    model, directory = saved
    pixels = torch.randn(2, 3, 64, 64)
    torch.save(pixels, tmp_path / "x.pt")
    imports = "import clinclip\nimport transformers" if order == "clinclip first" else \
        "import transformers\nimport clinclip"
    done = _run(f"""{imports}
import torch
from transformers import AutoConfig, AutoModel
config = AutoConfig.from_pretrained({str(directory)!r})
model = AutoModel.from_pretrained({str(directory)!r})
print(type(config).__name__, type(model).__name__, config.embed_dim)
with torch.no_grad():
    torch.save(model.get_image_features(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
""")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ClinClipConfig", "ClinClipPreTrainedModel", "32"]
    assert "clinclip" not in done.stderr.lower()  # no warning about an unknown model type
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "y.pt"), model.image_features(pixels))


def test_wrapper_saves_the_clinclip_folder_and_forwards(saved, tmp_path):
    from transformers import AutoConfig, AutoModel

    model, directory = saved
    assert type(AutoConfig.from_pretrained(str(directory))).__name__ == "ClinClipConfig"
    wrapped = AutoModel.from_pretrained(str(directory))
    assert type(wrapped).__name__ == "ClinClipPreTrainedModel"
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(wrapped.get_image_features(pixels), model.image_features(pixels))
    tokens = model.tokenize(["no effusion", "small effusion"])
    with torch.no_grad():
        out = wrapped(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        torch.testing.assert_close(out["text_embeds"], model.text_features(**tokens))
    again = wrapped.save_pretrained(tmp_path / "again")
    assert json.loads((again / "config.json").read_text())["model_type"] == "clinclip"
    assert (again / "README.md").is_file()


def _fake_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """The layout huggingface_hub's cache has after a download (refs/main -> snapshots/<commit>)."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


def test_hub_names_resolve_through_huggingface_hub(saved, tmp_path):
    model, directory = saved
    _fake_hub_cache(tmp_path / "hub", "radiology-lab/clinclip-tiny", directory)
    loaded = ClinClipModel.from_pretrained("radiology-lab/clinclip-tiny", cache_dir=tmp_path / "hub",
                                           local_files_only=True)
    torch.testing.assert_close(loaded.state_dict()["image_projection.weight"],
                               model.state_dict()["image_projection.weight"])
    with pytest.raises(ClinclipError, match="not available from the hub"):
        ClinClipModel.from_pretrained("radiology-lab/absent", cache_dir=tmp_path / "hub", local_files_only=True)
    with pytest.raises(ClinclipError, match="model directory not found"):
        ClinClipModel.from_pretrained(str(tmp_path / "nowhere" / "model"))


def test_push_to_hub_uploads_the_saved_folder(saved, monkeypatch):
    import huggingface_hub

    model, _ = saved
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs.get("exist_ok")))

        def upload_folder(self, repo_id, folder_path, **kwargs):
            calls.append(("upload", repo_id, sorted(os.listdir(folder_path))))
            return "commit"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert model.push_to_hub("radiology-lab/clinclip-tiny", token="t") == "commit"
    assert calls[1] == ("create", "radiology-lab/clinclip-tiny", True)
    assert calls[2][0] == "upload" and {"README.md", "config.json", "model.safetensors"} <= set(calls[2][2])
    with pytest.raises(ClinclipError, match="owner/name"):
        model.push_to_hub("not a repo")


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_saved_folders_get_the_users_usual_permissions(tmp_path, umask):
    previous = os.umask(umask)
    try:
        folder = ClinClipModel.from_config(tiny_model_config(graph=False)).save_pretrained(tmp_path / "m")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_fine_tuned_siglip_folder_is_portable_and_usable(tmp_path):
    """A SigLIP whose position table holds 32 tokens: the saved config says 32 (not 256), records no path of
    this machine, and the folder carries the tokenizer and the processor AutoImageProcessor reads."""
    from transformers import AutoImageProcessor, AutoTokenizer

    source = save_tiny_clip(tmp_path / "siglip-src", "siglip", image_size=32)
    model = init_from(source)
    out = model.save_pretrained(tmp_path / "tuned")
    text = (out / "config.json").read_text()
    assert str(tmp_path) not in text
    config = json.loads(text)
    assert config["hf_clip"]["source"] == "siglip-src" and config["hf_clip"]["max_text_length"] == 32
    assert config["text"]["max_text_length"] == 32
    assert AutoImageProcessor.from_pretrained(str(out)).size["height"] == 32
    assert AutoTokenizer.from_pretrained(str(out)).vocab_size > 1000
    with pytest.raises(ClinclipError, match="exceeds"):
        init_from(source, max_text_length=64)
