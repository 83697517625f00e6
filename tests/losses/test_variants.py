"""Variant presets, LossConfig validation and ClinClipLoss on model-style output dicts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from clinclip.errors import ClinclipError
from clinclip.losses import ClinClipLoss, LossConfig, clinical_vectors, list_variants, load_variant, total_loss

PAPER_TABLE_2 = ["clip", "clip-dt", "clip-dtc", "clip-n", "clip-n-dtc", "clip-g", "clip-g-dtcg", "clip-ng-dtcg"]
KEYS = ("image_embeds", "text_embeds", "neg_text_embeds", "graph_embeds", "neg_graph_embeds")


def model_outputs(B=6, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.randn(B, D, generator=g, dtype=torch.float64).requires_grad_(True) for k in KEYS}
    out["logit_scale"] = torch.tensor(1 / 0.07, dtype=torch.float64)
    labels = torch.randint(-1, 2, (B, 14), generator=g).to(torch.float64)
    labels[0] = float("nan")
    neg_labels = torch.randint(-1, 2, (B, 14), generator=g).to(torch.float64)
    return out, labels, neg_labels


def test_all_variants_bundled_and_consistent():
    names = list_variants()
    assert set(PAPER_TABLE_2 + ["softclip", "con1", "con2"]) <= set(names)
    for name in names:
        cfg = load_variant(name)
        assert cfg.name == name
    full = load_variant("clip-ng-dtcg")
    assert full.hard_negatives and full.graph and full.streams_used() == {"t", "c", "g"}
    assert full.taus == {"t": 0.8, "c": 0.5, "g": 0.8}
    assert set(full.active_pairs()) == {"I-T", "T-I", "I-G", "G-I", "T-G", "G-T"}
    assert "taus.t" in full.ours  # the paper publishes no tau: the preset says the value is ours


@pytest.mark.parametrize("name", ["clip", "clip-dt", "clip-dtc", "clip-n", "clip-n-dtc", "clip-g", "clip-g-dtcg",
                                  "clip-ng-dtcg", "softclip", "con1", "con2"])
def test_variant_runs_and_touches_only_its_inputs(name):
    cfg = load_variant(name)
    out, labels, neg_labels = model_outputs(seed=sorted(list_variants()).index(name))
    res = ClinClipLoss(cfg)(out, labels, neg_labels)
    assert torch.isfinite(res["loss"]) and res["loss"].item() > 0
    res["loss"].backward()
    used = {"image_embeds", "text_embeds"}
    if cfg.hard_negatives:
        used.add("neg_text_embeds")
    if cfg.graph:
        used |= {"graph_embeds"} | ({"neg_graph_embeds"} if cfg.hard_negatives else set())
    for k in KEYS:
        has_grad = out[k].grad is not None and out[k].grad.abs().sum() > 0
        assert has_grad == (k in used), (name, k)
    for pair in cfg.active_pairs():
        assert pair in res


def test_clip_variant_is_symmetric_infonce():
    out, labels, _ = model_outputs(B=5)
    res = ClinClipLoss("clip")(out, labels)
    logits = out["logit_scale"] * F.normalize(out["image_embeds"], dim=1) @ F.normalize(out["text_embeds"], dim=1).T
    y = torch.arange(5)
    want = F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)
    assert res["loss"].item() == pytest.approx(want.item(), rel=1e-12)


def test_soft_labels_change_the_loss_and_follow_uncertain_encoding():
    out, labels, neg_labels = model_outputs(B=8, seed=4)
    hard = ClinClipLoss("clip-n")(out, labels, neg_labels)["loss"].item()
    soft = ClinClipLoss("clip-n-dtc")(out, labels, neg_labels)["loss"].item()
    assert not math.isclose(hard, soft, rel_tol=1e-6)
    cfg = load_variant("clip-dtc")
    as0 = ClinClipLoss(cfg)(out, labels)["I-T/c"].item()
    cfg.uncertain_as = 1
    as1 = ClinClipLoss(cfg)(out, labels)["I-T/c"].item()
    assert not math.isclose(as0, as1, rel_tol=1e-9)  # the batch has uncertain (-1) labels


def test_module_equals_functional_on_clinical_vectors():
    out, labels, neg_labels = model_outputs(B=4, seed=8)
    cfg = load_variant("clip-ng-dtcg")
    res = ClinClipLoss(cfg)(out, labels, neg_labels)["loss"]
    want = total_loss(*(out[k] for k in KEYS[:2]), out["neg_text_embeds"], out["graph_embeds"],
                      out["neg_graph_embeds"], clinical_vectors(labels), clinical_vectors(neg_labels),
                      out["logit_scale"], cfg.weights, cfg.taus)
    assert res.item() == pytest.approx(want.item(), rel=1e-12)


def test_clinical_vectors():
    nan = float("nan")
    labels = torch.tensor([[1.0, 0.0, -1.0, nan], [nan, nan, nan, nan]])
    assert clinical_vectors(labels).tolist() == [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    assert clinical_vectors(labels, uncertain_as=1).tolist() == [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError):
        clinical_vectors(labels, uncertain_as=2)


def test_missing_inputs_are_named():
    out, labels, neg_labels = model_outputs()
    del out["neg_graph_embeds"]
    with pytest.raises(ValueError, match="neg_graph_embeds"):
        ClinClipLoss("clip-ng-dtcg")(out, labels, neg_labels)
    out, labels, _ = model_outputs()
    with pytest.raises(ValueError, match="neg_labels"):
        ClinClipLoss("clip-n-dtc")(out, labels, None)
    with pytest.raises(ValueError, match="labels"):
        ClinClipLoss("clip-dtc")(out, None)


def _write(tmp_path, data, name="v.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_load_from_path_and_errors_name_the_field(tmp_path):
    good = {"name": "mine", "weights": {"t": 1.0, "c": 0.5}, "taus": {"t": 0.7}, "requires": ["labels"]}
    cfg = load_variant(_write(tmp_path, good))
    assert cfg.name == "mine" and cfg.taus == {"t": 0.7, "c": 0.5, "g": 0.8}

    cases = [
        ({**good, "colour": 1}, "unknown field"),
        ({**good, "taus": {"t": 1.0}}, "'taus'"),
        ({**good, "weights": {"t": -1.0}}, "'weights'"),
        ({**good, "weights": {"q": 1.0}}, "'weights'"),
        ({**good, "requires": []}, "'requires'"),
        ({**good, "pairs": {"I-G": 1.0}}, "'pairs'"),
        ({**good, "weights": {"t": 0.0}, "requires": []}, "every stream weight is zero"),
        ({**good, "uncertain_as": 3}, "'uncertain_as'"),
        ({**good, "weights": {"s": 1.0}, "hard_negatives": True, "requires": ["hard_negatives"]}, "SoftCLIP"),
    ]
    for i, (data, message) in enumerate(cases):
        path = _write(tmp_path, data, f"bad{i}.yaml")
        with pytest.raises(ClinclipError, match=message) as err:
            load_variant(path)
        assert str(path) in str(err.value)
    with pytest.raises(ClinclipError, match="clip-ng-dtcg"):  # unknown name lists the bundled ones
        load_variant("clip-typo")
    with pytest.raises(ClinclipError, match="not found"):
        load_variant(tmp_path / "absent.yaml")
    assert LossConfig().validate().needed_inputs() == []


def test_half_precision_inputs_under_autocast_are_computed_in_float32():
    out, labels, neg_labels = model_outputs(B=6, seed=12)
    out32 = {k: (v.detach().float() if torch.is_tensor(v) else v) for k, v in out.items()}
    out16 = {k: v.to(torch.bfloat16) for k, v in out32.items()}
    want = ClinClipLoss("clip-ng-dtcg")(out32, labels, neg_labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ClinClipLoss("clip-ng-dtcg")(out16, labels, neg_labels)
    assert got["loss"].dtype == torch.float32
    # the inputs were rounded to bf16, the loss itself was not computed in bf16
    assert got["loss"].item() == pytest.approx(want["loss"].item(), rel=2e-2)
    ref = ClinClipLoss("clip-ng-dtcg")({k: v.float() for k, v in out16.items()}, labels, neg_labels)
    assert got["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-6)


def test_components_off_gives_same_loss():
    out, labels, neg_labels = model_outputs(B=5, seed=13)
    full = ClinClipLoss("clip-ng-dtcg")(out, labels, neg_labels)
    lean = ClinClipLoss("clip-ng-dtcg", components=False)(out, labels, neg_labels)
    assert lean["loss"].item() == pytest.approx(full["loss"].item(), rel=1e-12)
    assert "I-T/t" in full and "I-T/t" not in lean


def test_round_trip_and_derived_needs():
    for name in list_variants():
        cfg = load_variant(name)
        again = LossConfig.from_dict(cfg.to_dict(), f"round trip {name}")
        assert again == cfg
    data = load_variant("clip").to_dict()
    data["hard_negatives"] = True
    assert LossConfig.from_dict(data).needed_inputs() == ["hard_negatives"]


def test_world_size_without_process_group_is_refused():
    with pytest.raises(RuntimeError, match="not initialised"):
        ClinClipLoss("clip", rank=0, world_size=2)
