"""Training runs on a tiny prepared manifest (real report pipeline, PNG images, a model smaller than the tiny
preset): every variant learns, bad images are skipped and counted, resume reproduces an uninterrupted run,
``--init`` starts from own and Hugging Face CLIP directories, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from clinclip.errors import ClinclipError
from clinclip.losses import list_variants, load_variant
from clinclip.train import TrainConfig, run_training
from train_helpers import make_prepared_manifest, small_overrides


@pytest.fixture(scope="module")
def clean_manifest(tmp_path_factory):
    """8 studies: one batch of 8, so every step sees the same batch (augmentation off) -- an overfit test."""
    return make_prepared_manifest(tmp_path_factory.mktemp("clean"), n_rows=8)


@pytest.fixture(scope="module")
def manifest16(tmp_path_factory):
    return make_prepared_manifest(tmp_path_factory.mktemp("m16"), n_rows=16)


def _config(variant: str, manifest, out_dir, **extra) -> TrainConfig:
    values = small_overrides(manifest, out_dir, **extra)
    if "init" in extra:  # the architecture comes from the init directory
        values = {k: v for k, v in values.items() if not k.startswith("model.")}
    elif not load_variant(variant).graph:  # no need to load the frozen phrase encoder
        values["model.graph.enabled"] = False
    return TrainConfig.from_presets("tiny", variant, values)


def _losses(result) -> list[float]:
    return [row["loss"] for row in result.history]


# The full variant (every stream, hard negatives, graphs) in the default tier; each other variant is slow.
@pytest.mark.parametrize("variant", [v if v == "clip-ng-dtcg" else pytest.param(v, marks=pytest.mark.slow)
                                     for v in list_variants()])
def test_every_variant_trains_and_its_loss_falls(variant, clean_manifest, tmp_path):
    result = run_training(_config(variant, clean_manifest, tmp_path / "run", steps=6))
    losses = _losses(result)
    assert [row["step"] for row in result.history] == list(range(1, 7))
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < losses[0], f"{variant}: loss did not fall on a repeated batch: {losses}"
    row = result.history[0]
    assert row["global_batch"] == 8 and row["components"] and row["lr"] > 0 and row["logit_scale"] > 0
    # the run folder: config, log, checkpoint, and a model that loads back
    out = tmp_path / "run"
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "last.pt").is_file()
    assert TrainConfig.build(str(out / "config.yaml")).variant == variant
    from clinclip.models import ClinClipModel

    model = ClinClipModel.from_pretrained(result.model_dir)
    assert torch.allclose(model.logit_scale.exp(), torch.tensor(row["logit_scale"]), rtol=0.2)


def test_resume_reproduces_an_uninterrupted_run(manifest16, tmp_path):
    # Dropout and augmentation on: the resume must restore RNG states and the data position mid-epoch.
    extra = dict(steps=6, save_every=3, **{"data.augment": True,
                                           "model.text.backbone_config.hidden_dropout_prob": 0.1})
    straight = run_training(_config("clip-ng-dtcg", manifest16, tmp_path / "straight", **extra))

    class Killed(Exception):
        pass

    def kill_after_step_4(record):
        if record["step"] == 4:  # one step past the checkpoint at step 3, already logged
            raise Killed

    interrupted = _config("clip-ng-dtcg", manifest16, tmp_path / "resumed", **extra)
    with pytest.raises(Killed):
        run_training(interrupted, step_callback=kill_after_step_4)
    log = (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
    assert max(json.loads(line).get("step", 0) for line in log) == 4

    with pytest.raises(ClinclipError, match="--resume"):  # a fresh run must not overwrite it
        run_training(interrupted)
    resumed = run_training(_config("clip-ng-dtcg", manifest16, tmp_path / "resumed", resume=True, **extra))

    assert [row["step"] for row in resumed.history] == list(range(1, 7))
    assert _losses(resumed) == pytest.approx(_losses(straight), abs=1e-6, rel=0)
    from clinclip.models import ClinClipModel

    a = ClinClipModel.from_pretrained(straight.model_dir).state_dict()
    b = ClinClipModel.from_pretrained(resumed.model_dir).state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5

    # a resume with a different trajectory-changing setting is refused, naming it
    with pytest.raises(ClinclipError, match="lr"):
        run_training(_config("clip-ng-dtcg", manifest16, tmp_path / "resumed", resume=True,
                              **{**extra, "lr": 5e-4}))


def test_corrupt_and_missing_images_are_skipped_and_counted_via_cli(tmp_path):
    from typer.testing import CliRunner

    from clinclip.cli.main import app

    manifest = make_prepared_manifest(tmp_path, n_rows=8, corrupt=1, missing=1, empty_reports=1)
    out = tmp_path / "run"
    values = small_overrides(manifest, out, steps=4, batch_size=4, **{"model.graph.enabled": False})
    args = ["train", "clip-n"] + [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in values.items()]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["excluded_rows_by_reason"] == {"skip_reason: empty report": 1}
    # 10 rows with an image path, 4 per batch: every image is met within 4 steps (2.5 epochs)
    assert summary["skipped_images_by_reason"] == {"missing image file": 1,
                                                   "unreadable image (corrupt or unsupported)": 1}
    assert {e["path"].rsplit("/", 1)[1] for e in summary["skipped_image_examples"]} == {"missing0.png",
                                                                                      "corrupt0.png"}
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "event" not in r]
    assert len(steps) == 4 and steps[-1]["skipped_images"] == 2 and steps[-1]["excluded_rows"] == 1
    assert rows[-1]["event"] == "summary"
    assert min(r["global_batch"] for r in steps) < 4  # a batch really lost an image and still trained


def test_missing_columns_and_small_split_are_clear_errors(clean_manifest, tmp_path):
    import pandas as pd

    frame = pd.read_parquet(clean_manifest).drop(columns=["text_negated"])
    broken = tmp_path / "broken.parquet"
    frame.to_parquet(broken)
    with pytest.raises(ClinclipError, match=r"missing column\(s\) \['text_negated'\]"):
        run_training(_config("clip-n", broken, tmp_path / "a"))
    with pytest.raises(ClinclipError, match="no row with split == 'test'"):
        run_training(_config("clip", clean_manifest, tmp_path / "b", **{"data.split": "test"}))
    with pytest.raises(ClinclipError, match="fewer than one batch"):
        run_training(_config("clip", clean_manifest, tmp_path / "c", batch_size=16))


def test_init_from_own_model_and_from_a_hugging_face_clip(clean_manifest, tmp_path):
    from models_helpers import save_tiny_clip

    from clinclip.models import ClinClipModel, load_model

    first = run_training(_config("clip", clean_manifest, tmp_path / "first", steps=2))
    # con1 fine-tunes our own model...
    own = run_training(_config("con1", clean_manifest, tmp_path / "con1", steps=2, init=str(first.model_dir)))
    start_scale = float(ClinClipModel.from_pretrained(first.model_dir).logit_scale.detach().exp())
    assert own.history[0]["logit_scale"] == pytest.approx(start_scale, rel=1e-5)  # it started from those weights
    # ...and con2 a Hugging Face CLIP directory (image + text towers, negated captions = text_negated)
    clip_dir = save_tiny_clip(tmp_path / "hf-clip", "clip")
    con2 = run_training(_config("con2", clean_manifest, tmp_path / "con2", steps=3, init=str(clip_dir)))
    assert all(math.isfinite(x) for x in _losses(con2))
    model = load_model(con2.model_dir)
    assert model.config.family == "hf-clip"
    # the saved folder travels: no path of this machine, a text length the towers take, processor + tokenizer,
    # and a model card naming the run and the exact data
    import hashlib

    saved = json.loads((con2.model_dir / "config.json").read_text())
    assert str(tmp_path) not in json.dumps(saved) and saved["hf_clip"]["source"] == "hf-clip"
    assert saved["hf_clip"]["max_text_length"] == saved["text"]["max_text_length"] == 32  # the position table
    assert (con2.model_dir / "preprocessor_config.json").is_file() and (con2.model_dir / "tokenizer.json").is_file()
    card = model.card_info
    assert (card["variant"], card["steps"], card["base_model"], card["split"]) == ("con2", 3, "hf-clip", "train")
    assert card["data_fingerprint"] == hashlib.sha256(Path(clean_manifest).read_bytes()).hexdigest()
    with pytest.raises(ClinclipError, match="fixes the architecture"):
        run_training(TrainConfig.from_presets("tiny", "con1", small_overrides(
            clean_manifest, tmp_path / "x", init=str(clip_dir), **{"model.embed_dim": 8})))
    # a graph variant cannot start from CLIP towers
    with pytest.raises(ClinclipError, match="no graph encoder"):
        run_training(_config("clip-g", clean_manifest, tmp_path / "g", init=str(clip_dir)))


def test_training_clamps_logit_scale_in_place_after_each_step(clean_manifest, tmp_path):
    # a starting model whose logit_scale parameter is above its cap (log 200 > log 100): the first forward
    # uses 200, the clamp after the first optimiser step brings the parameter to the cap, and it stays there
    from clinclip.models import ClinClipModel

    config = _config("clip", clean_manifest, tmp_path / "unused")
    start = ClinClipModel.from_config(config.model_config())
    with torch.no_grad():
        start.logit_scale.fill_(math.log(200.0))
    start.save_pretrained(tmp_path / "start")
    result = run_training(_config("clip", clean_manifest, tmp_path / "run", steps=2, init=str(tmp_path / "start")))
    scales = [row["logit_scale"] for row in result.history]
    assert scales[0] == pytest.approx(200.0, rel=1e-5)
    assert all(s <= 100.0 * (1 + 1e-6) for s in scales[1:])
    assert ClinClipModel.from_pretrained(result.model_dir).logit_scale.item() <= math.log(100.0) + 1e-6
