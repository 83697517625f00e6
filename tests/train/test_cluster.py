"""Training on a cluster: a SIGTERM mid-run then --resume equals an uninterrupted run; gradient accumulation
equals the large batch (loss and gradients); validation metrics in log.jsonl with the best model kept; the
newest K checkpoints kept; precision and worker-count choices."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from clinclip.errors import ClinclipError
from clinclip.train import TrainConfig, run_training
from train_helpers import SMALL_MODEL, make_prepared_manifest, small_overrides


@pytest.fixture(scope="module")
def manifest16(tmp_path_factory):
    return make_prepared_manifest(tmp_path_factory.mktemp("cluster"), n_rows=16)


def _cfg(manifest, out_dir, variant="clip", **extra):
    values = small_overrides(manifest, out_dir, **extra)
    if variant == "clip":
        values["model.graph.enabled"] = False
    return TrainConfig.from_presets("tiny", variant, values)


def _losses(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["loss"] for r in rows if "event" not in r]


@pytest.mark.slow
def test_sigterm_mid_run_then_resume_equals_an_uninterrupted_run(manifest16, tmp_path):
    """A real SIGTERM to this process at step 3 of 6 (augmentation on, crossing an epoch): the run writes a
    checkpoint at that step boundary and stops; --resume finishes with the uninterrupted run's losses."""
    extra = {"steps": 6, "data.augment": True}
    straight = run_training(_cfg(manifest16, tmp_path / "straight", **extra))

    def preempt(record):
        if record["step"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = run_training(_cfg(manifest16, tmp_path / "run", **extra), step_callback=preempt)
    assert stopped.stopped_by == "SIGTERM" and stopped.steps == 3
    assert not (tmp_path / "run" / "model").exists()  # stopped, not finished
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {"event": "stopped", "step": 3, "signal": "SIGTERM"} in events
    resumed = run_training(_cfg(manifest16, tmp_path / "run", resume=True, **extra))
    assert resumed.stopped_by is None and resumed.steps == 6
    assert _losses(tmp_path / "run" / "log.jsonl") == pytest.approx([r["loss"] for r in straight.history],
                                                                    abs=1e-6, rel=0)


@pytest.mark.slow
def test_gradient_accumulation_equals_the_large_batch(manifest16):
    """The full method (clip-ng-dtcg: hard negatives, graphs, clinical labels): 4 micro-batches of 2 give
    the loss and every parameter gradient of one batch of 8."""
    from clinclip.losses import ClinClipLoss, load_variant
    from clinclip.models import ClinClipModel
    from clinclip.train.data import ManifestDataset, TrainCollator, load_training_rows
    from clinclip.train.loop import forward_backward

    loss_cfg = load_variant("clip-ng-dtcg")
    torch.manual_seed(0)
    model = ClinClipModel.from_preset("tiny", dict(SMALL_MODEL)).double()
    model.graph_encoder.requires_grad_(True)
    rows = load_training_rows(manifest16, "train", loss_cfg.needed_inputs(), max_rows=8)
    model.graph_encoder.warm_up(rows.graphs + rows.neg_graphs, progress=False)
    dataset = ManifestDataset(rows, model.image_transform(train=False))
    batch = TrainCollator.for_model(model)([dataset[i] for i in range(8)])
    inputs = {k: v for k, v in batch.items() if k not in ("skipped", "indices", "labels", "neg_labels")}
    inputs["pixel_values"] = inputs["pixel_values"].double()
    loss_fn = ClinClipLoss(loss_cfg)

    def forward(module, part):
        return {k: v.double() if torch.is_tensor(v) else v for k, v in module(part).items()}

    def run(k):
        model.zero_grad(set_to_none=True)
        losses = forward_backward(model, model, loss_fn, inputs, batch["labels"].double(),
                                  batch["neg_labels"].double(), k, forward, lambda loss: loss.backward())
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return losses, grads

    model.train()  # dropout is 0 in SMALL_MODEL: the cached and recomputed passes agree
    big, big_grads = run(1)
    accumulated, acc_grads = run(4)
    assert int(accumulated["global_batch"]) == 8  # every micro-batch's loss spans the whole batch
    torch.testing.assert_close(accumulated["loss"], big["loss"], rtol=1e-10, atol=1e-12)
    assert accumulated.keys() == big.keys() and {"I-T", "T-G", "I-T/c"} <= big.keys()
    for key in big:
        torch.testing.assert_close(accumulated[key], big[key], rtol=1e-10, atol=1e-12, msg=key)
    assert acc_grads.keys() == big_grads.keys() and "logit_scale" in big_grads
    assert any(n.startswith("graph_encoder.") for n in big_grads)
    for name, grad in big_grads.items():
        torch.testing.assert_close(acc_grads[name], grad, rtol=1e-7, atol=1e-10, msg=name)
    # Without the one-pass rule the logit scale would get 4x its gradient: the test can tell.
    assert abs(float(big_grads["logit_scale"])) > 1e-8


@pytest.mark.slow
def test_validation_metrics_are_logged_and_the_best_model_kept(tmp_path):
    """validate_every=2 on a manifest with a validate split: loss, CXR-Align A/B and zero-shot AUC appear in
    log.jsonl; best_model/ and best.json follow best_metric; keep_checkpoints=2 keeps the two newest."""
    import pandas as pd

    manifest = make_prepared_manifest(tmp_path, n_rows=24)
    frame = pd.read_parquet(manifest)
    frame.loc[16:, "split"] = "validate"
    frame.to_parquet(manifest)
    cfg = _cfg(manifest, tmp_path / "run", steps=4, validate_every=2, save_every=1, keep_checkpoints=2,
               best_metric="val_loss")
    result = run_training(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    validations = [r for r in rows if r.get("event") == "validation"]
    assert [v["step"] for v in validations] == [2, 4] and result.validations == validations
    for v in validations:
        metrics = v["metrics"]
        assert metrics["rows"] == 8 and metrics["val_loss"] > 0
        assert 0 <= metrics["cxr_align_a"] <= 1 and 0 <= metrics["cxr_align_b"] <= 1 and metrics["cxr_align_n"] > 0
        assert 0 <= metrics["zero_shot_auc"] <= 1
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    losses = {v["step"]: v["metrics"]["val_loss"] for v in validations}
    assert best["metric"] == "val_loss" and best["value"] == min(losses.values())
    assert best["step"] == min(losses, key=losses.get)
    assert (tmp_path / "run" / "best_model" / "config.json").is_file()
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["last.pt", "step-00000003.pt", "step-00000004.pt"]


def test_precision_and_worker_choices():
    from clinclip.system import available_cpus
    from clinclip.train.loop import precision_name, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None and precision_name(None) == "fp32"
    with pytest.raises(ClinclipError, match="precision = 'fp16' needs a CUDA device"):
        resolve_precision("fp16", cpu)
    assert precision_name(torch.float16) == "fp16"
    assert available_cpus() == len(os.sched_getaffinity(0))
    with pytest.raises(ClinclipError, match="accum_steps = 3"):
        TrainConfig.from_presets("tiny", "clip", {"batch_size": 8, "accum_steps": 3})
    with pytest.raises(ClinclipError, match="best_metric"):
        TrainConfig.from_presets("tiny", "clip", {"best_metric": "accuracy"})
    assert TrainConfig.from_presets("tiny", "clip", {"num_workers": "null"}).num_workers is None


def test_wandb_is_imported_only_when_enabled_and_named_when_missing(tmp_path, monkeypatch):
    import builtins

    from clinclip.train import loop

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ClinclipError, match="wandb = true but the wandb package is not installed"):
        loop._start_wandb(tmp_path, {"wandb_project": "x"})
