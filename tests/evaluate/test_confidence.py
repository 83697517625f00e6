"""Bootstrap confidence intervals: the vectorised resampled AUC is the AUC of the resampled data; intervals
cover the point estimate, shrink with n, are seeded; results carry them into JSON, CSV, LaTeX and HTML."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clinclip.evaluate.confidence import Bootstrap, weighted_auc
from clinclip.evaluate.results import read_results, write_result


def scored(n: int, seed: int = 0, separation: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    return y, np.round(rng.normal(size=n) + separation * y, 1)  # rounded: ties occur


def test_weighted_auc_is_the_auc_of_the_repeated_items():
    y, s = scored(300)
    boot = Bootstrap.draw(300, n_resamples=20, seed=3)
    got = weighted_auc(y, s, boot.counts)
    for row, value in zip(boot.counts.astype(int), got):
        idx = np.repeat(np.arange(300), row)
        assert value == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
    assert weighted_auc(y, s, np.ones(300))[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(weighted_auc(np.zeros(5, bool), np.arange(5.0), np.ones(5))[0])  # one class only


def test_counts_are_a_resample_of_n_items():
    boot = Bootstrap.draw(50, seed=1)
    assert boot.counts.shape == (1000, 50) and (boot.counts.sum(axis=1) == 50).all()
    assert np.array_equal(boot.counts, Bootstrap.draw(50, seed=1).counts)
    assert not np.array_equal(boot.counts, Bootstrap.draw(50, seed=2).counts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_cover_the_point_estimate_and_shrink_with_n(seed):
    widths = {}
    for n in (100, 400, 1600):
        y, s = scored(n, seed)
        boot = Bootstrap.draw(n, seed=seed)
        auc, auc_ci = roc_auc_score(y, s), boot.auc_ci(y, s)
        correct = (s > 0.4) == y
        acc, acc_ci = correct.mean(), boot.accuracy_ci(correct)
        assert auc_ci[0] < auc < auc_ci[1] and acc_ci[0] < acc < acc_ci[1]
        widths[n] = (auc_ci[1] - auc_ci[0], acc_ci[1] - acc_ci[0])
    for metric in (0, 1):  # the width falls like 1/sqrt(n): halves when n quadruples (loosely)
        assert widths[1600][metric] < widths[400][metric] < widths[100][metric]
        assert 0.3 < widths[1600][metric] / widths[400][metric] < 0.75


def test_interval_of_a_perfect_classifier_is_a_point():
    y = np.array([0, 0, 1, 1] * 10, dtype=bool)
    boot = Bootstrap.draw(len(y), seed=0)
    assert boot.auc_ci(y, y.astype(float)) == [1.0, 1.0]


def test_result_files_carry_the_intervals(tmp_path):
    result = {"task": "zero-shot", "dataset": "toy", "model_name": "m",
              "metrics": {"auc": 0.8, "auc_ci": [0.7, 0.9], "score": 0.8, "score_ci": [0.7, 0.9]},
              "table": {"columns": ["class", "AUC", "AUC 95% CI", "n (count)"],
                        "rows": [["Effusion", 0.8, [0.7, 0.9], 40], ["Edema", float("nan"), [None, None], 3]]},
              "skipped": {}, "notes": []}
    files = write_result(result, tmp_path / "zs.json")
    assert json.loads(files.json.read_text())["metrics"]["auc_ci"] == [0.7, 0.9]
    assert "| Effusion | 80.0 (70.0–90.0) | 40 |" in files.markdown.read_text()
    import pandas as pd

    csv = pd.read_csv(files.csv)
    assert list(csv.columns) == ["class", "AUC", "AUC 95% CI low", "AUC 95% CI high", "n (count)"]
    assert csv.loc[0, "AUC 95% CI low"] == 0.7 and np.isnan(csv.loc[1, "AUC"])
    tex = files.latex.read_text()
    assert "\\begin{tabular}" in tex and "80.0 (70.0--90.0)" in tex and "n (count)" in tex

    from clinclip.evaluate.report import render_report

    html = render_report(read_results([files.json]), tmp_path / "r.html").read_text()
    assert "80.0 (70.0–90.0)" in html
