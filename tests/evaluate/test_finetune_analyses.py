"""Fine-tuning (linear probe and full), the CXR-Align builder and the text-encoder analyses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from eval_helpers import KeyedEncoder, TinyBertEncoder, pil_loader, unit, write_gray_png
from clinclip.evaluate.analyses import attention_modules, run_analyses, zero_head
from clinclip.evaluate.cxr_align import build_benchmark
from clinclip.evaluate.embeddings import EmbeddingStore
from clinclip.evaluate.finetune import finetune, subsample
from clinclip.evaluate.prompts import load_prompts
from clinclip.observations import OBSERVATIONS


def _frame(tmp_path, n_per_split=20, seed=0):
    """Images whose pixel value tells the label: 60 = effusion, 180 = no effusion (separable)."""
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("train", "test"):
        for i in range(n_per_split):
            positive = i % 2 == 0
            value = int(60 + rng.integers(0, 3)) if positive else int(180 + rng.integers(0, 3))
            path = write_gray_png(tmp_path / split / f"{i}.png", value, size=16)
            rows.append({"image_path": path, "image_id": f"{split}{i}", "split": split,
                         "Pleural Effusion": 1.0 if positive else 0.0})
    return pd.DataFrame(rows)


@pytest.fixture()
def one_torch_thread():
    # tiny models on a shared 2-core machine: one thread avoids oversubscription (25x faster here)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_subsample_is_seeded_and_sized():
    assert len(subsample(100, 0.1, 0)) == 10
    assert subsample(100, 0.1, 3).tolist() == subsample(100, 0.1, 3).tolist()
    assert subsample(100, 0.1, 3).tolist() != subsample(100, 0.1, 4).tolist()
    assert len(subsample(5, 0.01, 0)) == 1


def test_linear_probe_learns_a_separable_label(tmp_path):
    frame = _frame(tmp_path)
    # embeddings: value ~60 -> near A, ~180 -> near B (plus a little per-value offset)
    table = {v: unit(1, 0.05 * (v - 60), 0) for v in range(60, 63)} | {v: unit(0.05 * (v - 180), 1, 0)
                                                                        for v in range(180, 183)}
    store = EmbeddingStore(KeyedEncoder(table, {}), "m", image_loader=pil_loader, progress=False)
    prompts = load_prompts("siim")
    prompts.classes[0].column = "Pleural Effusion"
    train, test = frame[frame.split == "train"].reset_index(drop=True), frame[frame.split == "test"].reset_index(drop=True)
    result = finetune(store, train, test, prompts, fractions=(0.5, 1.0), seeds=(0, 1))
    assert result["metrics"]["FT100"] == pytest.approx(1.0)
    assert result["summary"]["FT50"]["score"]["n"] == 2
    assert result["runs"]["FT50"][0]["n_train"] == 10


def test_full_finetuning_trains_the_image_encoder(tmp_path, one_torch_thread):
    frame = _frame(tmp_path, n_per_split=8)
    encoder = TinyBertEncoder()
    before = [p.detach().clone() for p in encoder.image_net.parameters()]
    store = EmbeddingStore(encoder, "tiny", image_loader=pil_loader, progress=False)
    prompts = load_prompts("siim")
    prompts.classes[0].column = "Pleural Effusion"
    train, test = frame[frame.split == "train"].reset_index(drop=True), frame[frame.split == "test"].reset_index(drop=True)
    result = finetune(store, train, test, prompts, method="full", fractions=(1.0,), seeds=(0,), epochs=15,
                      lr=1e-2, batch_size=8)
    # dark vs bright images are trivially separable: the fine-tuned model ranks them right
    assert result["metrics"]["FT100"] >= 0.9
    # the caller's encoder is untouched (a copy was trained)
    for p, q in zip(before, encoder.image_net.parameters()):
        assert torch.equal(p, q)


def test_align_builder_keeps_abnormal_studies_and_uses_the_hard_negative_generator():
    sentences = [["Moderate left pleural effusion.", "Mild cardiomegaly."],
                 ["No pneumothorax.", "Heart size is normal."],
                 ["Small right pleural effusion.", "Lungs are clear otherwise."]]
    labels = np.full((3, 14), np.nan)
    labels[0, OBSERVATIONS.index("Pleural Effusion")] = 1
    labels[0, OBSERVATIONS.index("Cardiomegaly")] = 1
    labels[1, OBSERVATIONS.index("No Finding")] = 1
    labels[2, OBSERVATIONS.index("Pleural Effusion")] = 1
    frame = pd.DataFrame(labels, columns=list(OBSERVATIONS))
    frame["sentences"] = sentences
    frame["image_id"] = ["i0", "i1", "i2"]
    frame["study_id"] = ["s0", "s1", "s2"]
    frame["image_path"] = ["a.png", "b.png", "c.png"]
    # a lateral image of study s0 as well: one image per study, frontal first
    lateral = frame.iloc[[0]].assign(image_id="i0-lat", view="LATERAL")
    frame = pd.concat([frame.assign(view="PA"), lateral], ignore_index=True)
    bench, counts = build_benchmark(frame, source="mimic", seed=0)
    entries = bench["mimic"]
    assert set(entries) == {"i0", "i2"}                 # normal study s1 left out, one image per study
    assert counts["normal study left out"] == 1
    assert counts["extra images of a study left out (one image per study)"] == 1
    e = entries["i2"]
    assert e["chosen"] == "Pleural Effusion"
    assert e["report"] == "Small right pleural effusion. Lungs are clear otherwise."
    assert "pleural effusion" not in e["omitted"].lower()
    assert e["negation"] != e["report"] and len(e["negation"]) > len(e["omitted"])
    assert set(e) == {"report", "negation", "omitted", "chosen", "inserted"}
    again, _ = build_benchmark(frame, source="mimic", seed=0)
    assert again == bench                                # seeded: same file twice


def test_head_ablation_hook_zeroes_one_head():
    encoder = TinyBertEncoder()
    modules = attention_modules(encoder.text_model)
    assert len(modules) == 2
    texts = ["No pleural effusion.", "Mild cardiomegaly."]
    with torch.no_grad():
        base = encoder.encode_texts(texts)
        handle = zero_head(modules[0], 1)
        ablated = encoder.encode_texts(texts)
        handle.remove()
        back = encoder.encode_texts(texts)
    assert not torch.allclose(base, ablated)
    torch.testing.assert_close(base, back)


def test_analyses_ig_tsne_and_head_ablation(tmp_path, one_torch_thread):
    pytest.importorskip("captum", reason="captum (optional dependency) is not installed")
    encoder = TinyBertEncoder()
    rows, bench = [], {"mimic": {}}
    for i in range(6):
        path = write_gray_png(tmp_path / f"{i}.png", 40 * i, size=16)
        rows.append({"image_id": f"i{i}", "image_path": path})
        bench["mimic"][f"i{i}"] = {"report": f"Pleural effusion {i}.", "negation": f"No pleural effusion {i}.",
                                   "omitted": "Heart normal.", "chosen": "Pleural Effusion"}
    store = EmbeddingStore(encoder, "tiny", image_loader=pil_loader, progress=False)
    result = run_analyses(store, benchmark=bench, frame=pd.DataFrame(rows), ig_steps=8)
    ig = result["integrated_gradients"]["sentences"]
    assert len(ig) == 13 and ig[0]["sentence"] == "No enlarged cardiomediastinum."
    assert ig[0]["tokens"][0] == "[CLS]" and len(ig[0]["tokens"]) == len(ig[0]["attributions"])
    assert 0.0 <= result["metrics"]["negation_cue_share"] <= 1.0
    assert -1.0 <= result["metrics"]["silhouette"] <= 1.0
    delta = np.array(result["head_ablation"]["delta"])
    assert delta.shape == (2, 2)
    assert set(result["plots"]) == {"Integrated Gradients (negated sentences)", "t-SNE affirmed vs negated",
                                    "Attention-head ablation (CXR-Align A)"}
