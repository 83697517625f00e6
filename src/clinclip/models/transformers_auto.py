"""clinclip model folders as ``transformers`` models: ``ClinClipConfig`` (``model_type: clinclip``) and
``ClinClipPreTrainedModel``, registered with ``AutoConfig`` / ``AutoModel`` once clinclip is imported, so

    import clinclip
    from transformers import AutoModel
    model = AutoModel.from_pretrained("runs/clip-ng-dtcg/model")     # or "owner/name" on the hub
    model.get_image_features(pixel_values), model.get_text_features(input_ids, attention_mask)
    model.push_to_hub("owner/name")

The weights stay in clinclip's own layout (the folder is written and read by ``ClinClipModel``; the wrapper
holds it as ``.clinclip``), so loading and saving go through clinclip's checks, its tokenizer and phrase
encoder handling and its model card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from clinclip.models.config import ModelConfig

MODEL_TYPE = "clinclip"


class ClinClipConfig(PretrainedConfig):
    """A clinclip ``config.json`` as transformers reads it; ``to_model_config()`` gives clinclip's own."""

    model_type = MODEL_TYPE

    def to_model_config(self) -> ModelConfig:
        import dataclasses

        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        data = {key: value for key, value in self.to_dict().items() if key in fields}
        return ModelConfig.from_dict(data, where=f"{self.name_or_path or 'clinclip'} config")


class ClinClipPreTrainedModel(PreTrainedModel):
    """A ``ClinClipModel`` (either family) behind transformers' model interface."""

    config_class = ClinClipConfig
    base_model_prefix = "clinclip"
    main_input_name = "pixel_values"

    def __init__(self, config: ClinClipConfig, model=None):
        super().__init__(config)
        from clinclip.models.factory import build_model

        self.clinclip = model if model is not None else build_model(config.to_model_config())

    def _init_weights(self, module) -> None:
        """The wrapped model initialises (or loads) its own weights; transformers must not redo it."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args, config=None,
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool | None = None, **kwargs: Any) -> "ClinClipPreTrainedModel":
        """Load a clinclip folder (local or hub name) through ``ClinClipModel.from_pretrained``."""
        from clinclip.models.factory import load_model
        from clinclip.models.hub import resolve_model_dir

        directory = resolve_model_dir(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
                                      local_files_only=local_files_only)
        model = load_model(directory)
        config = ClinClipConfig.from_pretrained(str(directory))
        return cls(config, model=model).eval()

    def save_pretrained(self, save_directory: str | Path, *args, **kwargs: Any) -> Path:
        """Write the clinclip folder (config, safetensors, tokenizer, model card); transformers' options
        (``safe_serialization``, ``max_shard_size``, ...) do not apply to it."""
        return self.clinclip.save_pretrained(save_directory, card=kwargs.get("card"))

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Projected (unnormalised) image embeddings, as ``CLIPModel.get_image_features``."""
        return self.clinclip.image_features(pixel_values)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          **kwargs: Any) -> torch.Tensor:
        """Projected (unnormalised) text embeddings, as ``CLIPModel.get_text_features``."""
        return self.clinclip.text_features(input_ids, attention_mask)

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, **batch: Any) -> dict[str, torch.Tensor]:
        """clinclip's forward: ``image_embeds`` / ``text_embeds`` (and graph keys) + ``logit_scale``."""
        return self.clinclip({"pixel_values": pixel_values, "input_ids": input_ids,
                              "attention_mask": attention_mask, **batch})


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` know ``model_type: clinclip`` (idempotent)."""
    AutoConfig.register(MODEL_TYPE, ClinClipConfig, exist_ok=True)
    AutoModel.register(ClinClipConfig, ClinClipPreTrainedModel, exist_ok=True)
