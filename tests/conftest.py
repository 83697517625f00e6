"""Shared fixtures. Tests that read ../shared/ (real reports) skip, with the reason shown, when it is
absent; nothing in the package needs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLINCLIP_SHARED", REPO_ROOT.parent / "shared"))
IU_REPORTS = SHARED / "data" / "iu_reports_dev.csv"


@pytest.fixture(scope="session")
def iu_reports_path() -> Path:
    """The real IU/Open-i reports with human MeSH tags (../shared/data/iu_reports_dev.csv)."""
    if not IU_REPORTS.exists():
        pytest.skip(f"real reports not found at {IU_REPORTS} (../shared is absent)")
    return IU_REPORTS


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    # No test may reach a model hub: everything loads from local directories the tests build.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
