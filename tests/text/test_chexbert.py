"""CheXbert backend: a tiny random BERT saved in the published checkpoint's exact key layout."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS
from clinclip.text.chexbert import CheXbertLabeler, class_indices_to_labels
from textgen_helpers import minilm_tokenizer_dir, save_tiny_chexbert

@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return minilm_tokenizer_dir(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def vocab_size(tok_dir) -> int:
    return sum(1 for _ in open(tok_dir / "vocab.txt", encoding="utf-8"))


REPORTS = ["No pleural effusion or pneumothorax.", "Moderate cardiomegaly.\nLeft basilar atelectasis.", "",
           "Endotracheal tube in place. " * 200]


def test_labels_shape_values_and_determinism(tmp_path, tok_dir, vocab_size):
    ckpt = tmp_path / "chexbert.pth"
    save_tiny_chexbert(ckpt, vocab_size)
    labeler = CheXbertLabeler(ckpt, tok_dir, batch_size=3, num_attention_heads=2)
    out = labeler.label(REPORTS)
    assert out.shape == (len(REPORTS), 14)
    finite = out[~np.isnan(out)]
    assert set(np.unique(finite)) <= {1.0, 0.0, -1.0}
    assert set(np.unique(out[:, 13][~np.isnan(out[:, 13])])) <= {1.0}  # No Finding: blank or positive only
    again = CheXbertLabeler(ckpt, tok_dir, batch_size=1, num_attention_heads=2).label(REPORTS)
    np.testing.assert_array_equal(out, again)  # batch size / padding does not change results
    # Order is the input order, whatever the length-sorted batching did.
    single = labeler.label([REPORTS[1]])
    np.testing.assert_array_equal(single[0], out[1])


@pytest.mark.parametrize("head", [9, 13])
def test_the_heads_are_read(tmp_path, tok_dir, vocab_size, head):
    ckpt = tmp_path / "chexbert.pth"
    save_tiny_chexbert(ckpt, vocab_size, positive_head=head, wrap=False)  # bare state dict also accepted
    # num_attention_heads from a config.json next to the tokenizer, as in bert-base-uncased's folder
    tdir = tmp_path / "tok"
    shutil.copytree(tok_dir, tdir)
    (tdir / "config.json").write_text(json.dumps({"num_attention_heads": 2}))
    out = CheXbertLabeler(ckpt, tdir).label(REPORTS[:2])
    assert (out[:, head] == 1.0).all(), OBSERVATIONS[head]


def test_class_mapping_matches_chexbert():
    idx = np.zeros((1, 14), dtype=np.int64)
    idx[0, :4] = [0, 1, 2, 3]
    idx[0, 13] = 1
    out = class_indices_to_labels(idx)[0]
    assert math.isnan(out[0]) and out[1] == 1.0 and out[2] == 0.0 and out[3] == -1.0 and out[13] == 1.0


def test_wrong_layout_names_missing_keys(tmp_path, tok_dir, vocab_size):
    ckpt = tmp_path / "broken.pth"
    save_tiny_chexbert(ckpt, vocab_size, drop_key="module.linear_heads.13")
    with pytest.raises(ClinclipError, match=r"broken\.pth.*linear_heads\.13\.weight"):
        CheXbertLabeler(ckpt, tok_dir, num_attention_heads=2)
    other = tmp_path / "other.pth"
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(ClinclipError, match="module.bert."):
        CheXbertLabeler(other, tok_dir, num_attention_heads=2)
    with pytest.raises(ClinclipError, match="not found"):
        CheXbertLabeler(tmp_path / "absent.pth", tok_dir)
