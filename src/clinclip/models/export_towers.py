"""Export clinclip's own architecture (family ``clinclip``) as standard Hugging Face models plus the
projection heads, usable with ``transformers`` and ``safetensors`` alone:

    OUT/image_encoder/      the vision backbone (e.g. SwinModel): config.json, model.safetensors and a
                            preprocessor_config.json reproducing clinclip's evaluation preprocessing
    OUT/text_encoder/       the text backbone (e.g. BertModel, saved without its unused pooler) + tokenizer
    OUT/projections.safetensors  image_projection (D×W_image), text_projection (D×W_text), logit_scale (log)
    OUT/projections.json    how to pool and project: text pooling (cls / mean over the attention mask), image
                            pooling (pooler_output, else the mean of last_hidden_state), embed_dim, text length
    OUT/README.md           the recipe in plain transformers code

The graph encoder (report graphs, training only) is not exported: evaluation and retrieval use the image
and text towers alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

PROJECTIONS = "projections.safetensors"
PROJECTIONS_CONFIG = "projections.json"

RECIPE = Template('''# clinclip image and text towers as plain Hugging Face models

Exported from a clinclip model (family `clinclip`). No clinclip needed to use it:

```python
import json, torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

folder = "path/to/this/folder"
image_encoder = AutoModel.from_pretrained(folder + "/image_encoder").eval()
text_encoder = AutoModel.from_pretrained(folder + "/text_encoder", add_pooling_layer=False).eval()
tokenizer = AutoTokenizer.from_pretrained(folder + "/text_encoder")
processor = AutoImageProcessor.from_pretrained(folder + "/image_encoder")  # clinclip's evaluation preprocessing
heads = load_file(folder + "/projections.safetensors")
spec = json.load(open(folder + "/projections.json"))

def image_embeds(pixel_values):                    # processor(images=..., return_tensors="pt").pixel_values
    out = image_encoder(pixel_values=pixel_values)
    pooled = out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(1)
    return torch.nn.functional.normalize(pooled.flatten(1) @ heads["image_projection"].T, dim=-1)

def text_embeds(texts):
    t = tokenizer(texts, padding=True, truncation=True, max_length=spec["max_text_length"], return_tensors="pt")
    hidden = text_encoder(**t).last_hidden_state
    if spec["text_pooling"] == "cls":
        pooled = hidden[:, 0]
    else:
        mask = t["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled @ heads["text_projection"].T, dim=-1)

similarity = image_embeds(pixels) @ text_embeds(["No pleural effusion."]).T   # cosine similarities
```

Grayscale radiographs: give the processor the image as RGB (the gray value in all three channels).
Embedding size $embed_dim; text pooling `$text_pooling`; texts up to $max_text_length tokens; logit scale
$logit_scale (`heads["logit_scale"].exp()`). The processor resizes with PIL's bilinear filter, which clinclip's
torch resize matches to within 8-bit rounding. The graph encoder of the clinclip model (report graphs, used in
training) is not part of this export.
''')


def image_processor_config(image) -> dict:
    """A ``preprocessor_config.json`` doing what clinclip's ``ImageTransform`` does at evaluation (bilinear
    resize of the shorter side + centre crop, or a squash to the square; then mean / std)."""
    size = int(image.image_size)
    config = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "resample": 2,
              "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
              "image_mean": list(image.mean), "image_std": list(image.std)}
    if image.resize_mode == "shorter_crop":
        config.update(size={"shortest_edge": size}, do_center_crop=True, crop_size={"height": size, "width": size})
    else:
        config.update(size={"height": size, "width": size}, do_center_crop=False)
    return config


def export_towers(model_dir: Path, out: Path) -> None:
    """A clinclip-family model folder -> standard HF image and text encoders + projection heads in ``out``."""
    from safetensors.torch import save_file

    from clinclip.models.model import ClinClipModel

    model = ClinClipModel.from_pretrained(model_dir, load_graph=False)
    config = model.config
    image_dir, text_dir = out / "image_encoder", out / "text_encoder"
    model.image_backbone.save_pretrained(str(image_dir), safe_serialization=True)
    processor = config.image.processor or image_processor_config(config.image)
    (image_dir / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n", encoding="utf-8")
    model.text_backbone.save_pretrained(str(text_dir), safe_serialization=True)
    model.tokenizer.model_max_length = model.max_text_length
    model.tokenizer.save_pretrained(str(text_dir))
    save_file({"image_projection": model.image_projection.weight.detach().contiguous().cpu(),
               "text_projection": model.text_projection.weight.detach().contiguous().cpu(),
               "logit_scale": model.logit_scale.detach().reshape(1).cpu()},
              str(out / PROJECTIONS), metadata={"format": "pt"})
    spec = {"embed_dim": config.embed_dim, "text_pooling": config.text.pooling,
            "image_pooling": "pooler_output, else the mean of last_hidden_state over tokens",
            "max_text_length": model.max_text_length, "logit_scale": float(model.logit_scale.detach().exp()),
            "image_size": config.image.image_size, "exported_from": "clinclip (family clinclip)"}
    (out / PROJECTIONS_CONFIG).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(RECIPE.substitute(
        embed_dim=spec["embed_dim"], text_pooling=spec["text_pooling"], max_text_length=spec["max_text_length"],
        logit_scale=f"{spec['logit_scale']:.2f}"), encoding="utf-8")
