"""clinclip models on the Hugging Face hub: hub names wherever a model folder is asked for, a model card in
every saved folder, ``push_to_hub``, and saved folders that travel (no machine-specific paths, the user's
usual file permissions).

A hub name (``owner/model``) resolves through ``huggingface_hub.snapshot_download`` (its cache, or the hub
when reachable); a local folder always wins over a hub name of the same spelling.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from clinclip.errors import ClinclipError

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CARD_NAME = "README.md"
CARD_KEY = "clinclip"  # the model card's metadata section that clinclip reads back


def is_hub_name(value: str) -> bool:
    return bool(HUB_NAME.match(value)) and not value.startswith((".", "~"))


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None,
                      cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None) -> Path:
    """A local model folder for ``name_or_path``: the folder itself, or the hub snapshot of ``owner/model``."""
    text = str(name_or_path)
    local = Path(os.path.expanduser(text))
    if local.exists():
        return local
    if not is_hub_name(text):
        raise ClinclipError(f"{text}: model directory not found (and not a hub name of the form owner/model)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": str(cache_dir) if cache_dir else None}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        return Path(snapshot_download(text, **kwargs))
    except (OSError, ValueError, HfHubHTTPError) as err:  # offline, unknown repo, gated: not available here
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ClinclipError(f"{text}: not a local directory and not available from the hub (Hugging Face) or its "
                            f"local cache ({err.__class__.__name__}: {first}); download it once "
                            "(huggingface-cli download) and pass the directory") from None


# ---------------------------------------------------------------------------------------------- portability
def portable_source(source: str | None) -> str | None:
    """A source as a saved config may record it: hub names and ``package:`` sources as they are; a local path
    only by its folder name (provenance; the saved folder holds what it needs to rebuild)."""
    if source is None or source.startswith("package:"):
        return source
    expanded = os.path.expanduser(source)
    if os.path.isabs(expanded) or source.startswith((".", "~")) or os.path.exists(expanded):
        return Path(expanded.rstrip("/\\")).name or source
    return source


def current_umask() -> int:
    """The process umask (read by setting it and restoring it at once; no other way in the stdlib)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_default_permissions(directory: Path) -> None:
    """Give a folder written through temporary files (created 0700 / 0600) the permissions a plain
    ``mkdir`` / ``open`` would have given under the user's umask, so colleagues can read a shared model."""
    mask = current_umask()
    os.chmod(directory, 0o777 & ~mask)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


# ---------------------------------------------------------------------------------------------- model card
def read_card_info(directory: Path) -> dict[str, Any]:
    """What a folder's model card recorded for clinclip (training, data, metrics); {} without a card."""
    path = Path(directory) / CARD_NAME
    if not path.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        data = ModelCard.load(path).data.to_dict()
    except (ValueError, OSError):  # a hand-written README without metadata: nothing to read back
        return {}
    info = data.get(CARD_KEY)
    return dict(info) if isinstance(info, dict) else {}


def _fmt_metric(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return "–" if None in value else f"{value[0]:.3f}–{value[1]:.3f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(config, info: dict[str, Any], name: str = "clinclip model") -> str:
    """README.md of a saved model folder: hub metadata (library, tags, base model, clinclip's own section)
    and the model, its training data (manifest fingerprint), steps and the metrics it was evaluated on."""
    from huggingface_hub import ModelCardData

    hf = config.hf_clip
    if config.family == "hf-clip":
        towers = [("image + text towers", f"Hugging Face {info.get('kind', 'CLIP/SigLIP')}"
                                          f" from {info.get('base_model') or 'an inline config'}")]
    else:
        towers = [("image tower", f"{(config.image.backbone_config or {}).get('model_type', '?')} "
                                  f"({config.image.backbone or 'random init'})"),
                  ("text tower", f"{(config.text.backbone_config or {}).get('model_type', '?')} "
                                 f"({config.text.backbone or 'random init'}), {config.text.pooling} pooling"),
                  ("graph encoder", f"{config.graph.num_layers}-layer GCN over {config.graph.phrase_encoder}"
                                    if config.graph_enabled else "none")]
    base = info.get("base_model")
    data = ModelCardData(library_name="clinclip", license=info.get("license"),
                         base_model=base if isinstance(base, str) and is_hub_name(base) else None,
                         pipeline_tag="zero-shot-image-classification",
                         tags=list(dict.fromkeys(["clinclip", "chest-x-ray", "radiology", "vision-language", "clip",
                                                  config.family])),
                         **{CARD_KEY: {k: v for k, v in info.items() if v is not None}})
    image = config.image
    lines = [f"# {name}", "",
             "A chest X-ray vision-language model trained with clinclip"
             f" (family `{config.family}`" + (f", variant `{info['variant']}`" if info.get("variant") else "")
             + ").", "", "## Model", "", "| part | |", "|---|---|"]
    lines += [f"| {part} | {what} |" for part, what in towers]
    lines += [f"| embedding | {config.embed_dim} dimensions, cosine similarity |",
              f"| images | {image.image_size} px, mean {list(image.mean)}, std {list(image.std)}"
              + (", the Hugging Face image processor in `preprocessor_config.json`" if image.processor else "")
              + " |",
              f"| texts | up to {hf.max_text_length if hf is not None and hf.max_text_length else config.text.max_text_length}"
              " tokens |", "", "## Training", ""]
    training = [(label, info.get(key)) for label, key in
                (("loss variant", "variant"), ("steps", "steps"), ("batch size", "batch_size"),
                 ("data manifest", "data"), ("data manifest fingerprint (SHA-256)", "data_fingerprint"),
                 ("split", "split"), ("training rows", "rows"), ("seed", "seed"), ("initialised from", "base_model"))
                if info.get(key) is not None]
    if training:
        lines += ["| | |", "|---|---|"] + [f"| {label} | `{value}` |" for label, value in training]
    else:
        lines.append("No training run recorded (saved from Python without training information).")
    lines += ["", "## Evaluation", ""]
    metrics = info.get("metrics") or {}
    if metrics:
        lines += ["| metric | value (95 % CI where known) |", "|---|---|"]
        lines += [f"| {k} | {_fmt_metric(v)}" + (f" ({_fmt_metric(metrics[k + '_ci'])})" if k + "_ci" in metrics
                                                 else "") + " |"
                  for k, v in metrics.items() if not k.endswith("_ci")]
    else:
        lines.append("Not evaluated when saved: run `clinclip eval ...` (results JSON, CSV and LaTeX tables).")
    lines += ["", "## Use", "", "```python",
              "import clinclip  # registers model_type 'clinclip' with transformers' AutoConfig / AutoModel",
              "from clinclip.models import load_model", "",
              "model = load_model(\"<this folder or owner/name on the hub>\")",
              "images = model.encode_image(pixel_values)            # L2-normalised",
              "texts = model.encode_text([\"No pleural effusion.\"])", "```", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------- push
def push_to_hub(model, repo_id: str, *, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload clinclip model", card: dict[str, Any] | None = None):
    """Save ``model`` (with its card) into a temporary folder and upload it as the hub repository
    ``repo_id`` (created when missing). Returns huggingface_hub's commit info."""
    from huggingface_hub import HfApi

    if not is_hub_name(repo_id):
        raise ClinclipError(f"push_to_hub: {repo_id!r} is not a hub repository name (owner/name)")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="clinclip-push-") as tmp:
        folder = model.save_pretrained(Path(tmp) / "model", card=card)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                 repo_type="model")
