"""load_encoder and the hf-clip family: tiny CLIP / SigLIP directories saved like published ones."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from clinclip.errors import ClinclipError
from clinclip.models import ClinClipModel, HfClipModel, VisionLanguageEncoder, init_from, load_encoder, load_model
from models_helpers import save_tiny_clip, tiny_model_config

TEXTS = ["no pleural effusion", "small left pleural effusion", "normal chest"]


def _images(encoder, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return torch.stack([encoder.preprocess(rng.integers(0, 256, (40, 56), dtype=np.uint8)) for _ in range(n)])


def _check_encoder(encoder, dim):
    assert isinstance(encoder, VisionLanguageEncoder)
    pixels = _images(encoder)
    assert pixels.shape == (3, 3, encoder.image_size, encoder.image_size)
    images, texts = encoder.encode_images(pixels), encoder.encode_texts(TEXTS, batch_size=2)
    assert images.shape == (3, dim) and texts.shape == (3, dim)
    torch.testing.assert_close(images.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(texts.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(encoder.encode_texts(TEXTS), texts)  # deterministic, batching-independent
    torch.testing.assert_close(encoder.encode_images(pixels, batch_size=1), images)
    assert not torch.allclose(texts[0], texts[1])
    assert encoder.text_model is not None and encoder.tokenizer is not None


@pytest.mark.parametrize("kind, dim", [("clip", 24), ("siglip", 32)])
def test_hugging_face_directories_load_as_encoders(tmp_path, kind, dim):
    directory = save_tiny_clip(tmp_path / kind, kind)
    encoder = load_encoder(directory)
    _check_encoder(encoder, dim)
    assert encoder.name == f"{kind}:{kind}"
    # the wrapper's embeddings are the published model's own get_*_features
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(str(directory)).eval()
    tokens = encoder.tokenize(TEXTS[:2])
    with torch.no_grad():
        ref = reference.get_text_features(input_ids=tokens["input_ids"],
                                          **({} if kind == "siglip" else {"attention_mask": tokens["attention_mask"]}))
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    torch.testing.assert_close(encoder.encode_texts(TEXTS[:2]), torch.nn.functional.normalize(ref, dim=-1))


def test_processor_config_sets_preprocessing(tmp_path):
    siglip = HfClipModel.from_hf_directory(save_tiny_clip(tmp_path / "s", "siglip", image_size=32))
    assert (siglip.config.image.image_size, siglip.config.image.resize_mode) == (32, "squash")
    assert siglip.tokenize(["effusion"])["input_ids"].shape[1] == 32  # SigLIP pads to full length
    clip = HfClipModel.from_hf_directory(save_tiny_clip(tmp_path / "c", "clip", processor=False))
    assert clip.config.image.resize_mode == "shorter_crop" and clip.config.image.mean[0] == pytest.approx(0.4815, 1e-3)


def test_hf_clip_family_trains_saves_and_reloads(tmp_path):
    model = init_from(save_tiny_clip(tmp_path / "clip", "clip"))
    assert model.config.family == "hf-clip" and model.graph_encoder is None
    tokens, neg = model.tokenize(TEXTS[:2]), model.tokenize(["effusion", "no effusion at all"])
    batch = {"pixel_values": torch.randn(2, 3, 32, 32), **tokens, "neg_input_ids": neg["input_ids"],
             "neg_attention_mask": neg["attention_mask"], "graphs": ["ignored"] * 2}
    out = model(batch)
    assert set(out) == {"image_embeds", "text_embeds", "neg_text_embeds", "logit_scale"}
    assert out["logit_scale"].item() == pytest.approx(np.exp(2.6592), rel=1e-3)
    sum(v.pow(2).mean() for v in out.values()).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    model.eval()
    with torch.no_grad():
        expected = model(batch)
    model.save_pretrained(tmp_path / "finetuned")
    assert json.loads((tmp_path / "finetuned" / "config.json").read_text())["family"] == "hf-clip"
    with pytest.raises(ClinclipError, match="family 'hf-clip', which ClinClipModel does not build; use .*load_model"):
        ClinClipModel.from_pretrained(tmp_path / "finetuned")
    reloaded = load_model(tmp_path / "finetuned").eval()
    assert isinstance(reloaded, HfClipModel)
    with torch.no_grad():
        got = reloaded(batch)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])
    _check_encoder(load_encoder(tmp_path / "finetuned"), 24)


def test_own_model_round_trip_through_load_encoder(tmp_path):
    torch.manual_seed(0)
    model = ClinClipModel.from_config(tiny_model_config(graph=True)).eval()
    model.save_pretrained(tmp_path / "own")
    encoder = load_encoder(tmp_path / "own")
    assert encoder.model.graph_encoder is None  # evaluation skips the graph tower and its phrase encoder
    _check_encoder(encoder, 32)
    pixels = _images(encoder)
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_images(pixels), model.encode_image(pixels))
        torch.testing.assert_close(encoder.encode_texts(TEXTS), model.encode_text(TEXTS))


def test_unknown_or_missing_models_are_clear_errors(tmp_path):
    clip_dir = save_tiny_clip(tmp_path / "clip", "clip")
    with pytest.raises(ClinclipError, match="a Hugging Face 'clip' directory, not a clinclip model; use .*init_from"):
        ClinClipModel.from_pretrained(clip_dir)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ClinclipError, match="'bert' is not a supported model kind"):
        load_encoder(tmp_path / "bert")
    with pytest.raises(ClinclipError, match="no config.json"):
        load_encoder(tmp_path)
    with pytest.raises(ClinclipError, match="not available from the hub"):
        load_encoder("nobody/no-such-model")  # the hub is offline in tests
    with pytest.raises(ClinclipError, match="model directory not found"):
        load_encoder(str(tmp_path / "missing" / "dir"))


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip is installed here")
def test_open_clip_without_the_package_says_how_to_install():
    with pytest.raises(ClinclipError, match="pip install"):
        load_encoder("open_clip:ViT-B-32@/weights/model.bin")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None,
                    reason="open_clip (open_clip_torch) is not installed in this environment")
def test_open_clip_encoder_with_random_weights():
    encoder = load_encoder("open_clip:RN50", pretrained=None)
    _check_encoder(encoder, 1024)


def test_open_clip_models_use_their_own_preprocess(monkeypatch):
    """open_clip cannot be installed here: a stand-in module with open_clip's interface
    (create_model_and_transforms -> model, train transform, eval transform; get_tokenizer) checks that the
    encoder feeds images through the model's own eval ``preprocess``, given a PIL RGB image."""
    import sys
    import types

    from PIL import Image

    seen = []

    def preprocess(pil_image):  # e.g. open_clip's Resize(shortest) + CenterCrop + ToTensor + Normalize
        seen.append((pil_image.mode, pil_image.size))
        arr = np.asarray(pil_image.resize((16, 16), Image.BICUBIC), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1) * 2 - 1

    class FakeClip(torch.nn.Module):
        embed_dim = 8

        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Linear(3 * 16 * 16, 8)
            self.visual.image_size = (16, 16)
            self.text = torch.nn.Embedding(100, 8)

        def encode_image(self, pixels):
            return self.visual(pixels.flatten(1))

        def encode_text(self, ids):
            return self.text(ids).mean(1)

    fake = types.ModuleType("open_clip")
    fake.create_model_and_transforms = lambda arch, pretrained=None: (FakeClip(), None, preprocess)
    fake.get_tokenizer = lambda arch: (lambda texts: torch.tensor([[len(t) % 100, 1, 0] for t in texts]))
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    encoder = load_encoder("open_clip:ViT-Fake")
    image = np.random.default_rng(0).integers(0, 256, (40, 56), dtype=np.uint8)
    pixels = encoder.preprocess(image)
    assert seen == [("RGB", (56, 40))]  # the model's own transform got the whole image, as PIL RGB
    assert torch.equal(pixels, preprocess(Image.fromarray(image).convert("RGB")))
    assert encoder.image_size == 16 and encoder.encode_images(pixels[None]).shape == (1, 8)
