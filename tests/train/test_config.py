"""TrainConfig: presets, overrides with type checking, unknown keys, YAML round trip (no training here)."""

from __future__ import annotations

import pytest
import yaml

from clinclip.errors import ClinclipError
from clinclip.train import TrainConfig, list_training_presets
from clinclip.train.loop import parameter_groups, warmup_cosine


def test_paper_preset_holds_cxr_clip_defaults():
    cfg = TrainConfig.build("clip-ng-dtcg", ["model=paper"])
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.warmup_epochs) == (128, 5e-5, 1e-4, 15, 1.0)
    model = cfg.model_config()
    assert model.text.max_text_length == 256 and model.embed_dim == 512
    assert cfg.data.augment and cfg.data.clahe_p > 0
    assert set(list_training_presets()) >= {"tiny", "paper"}


def test_overrides_are_typed_and_reach_model_and_loss():
    cfg = TrainConfig.build("clip-ng-dtcg", ["model=tiny", "steps=200", "lr=1e-4", "grad_clip=null",
                                             "data.manifest=p.parquet", "betas=[0.9, 0.98]", "data.augment=false",
                                             "model.text.max_text_length=64", "loss.taus.t=0.7", "out_dir=2024"])
    assert cfg.steps == 200 and cfg.lr == 1e-4 and cfg.grad_clip is None and cfg.betas == (0.9, 0.98)
    assert cfg.data.manifest == "p.parquet" and cfg.data.augment is False and cfg.out_dir == "2024"
    assert cfg.model_config().text.max_text_length == 64
    assert cfg.loss_config().taus["t"] == 0.7


@pytest.mark.parametrize("override, message", [
    ("steps=abc", "steps = 'abc': expected an integer"),
    ("lr=fast", "lr = 'fast': expected a finite number"),
    ("data.augment=maybe", "data.augment = 'maybe': expected true or false"),
    ("betas=[0.9]", "expected a list of 2 values"),
    ("precision=fp8", "allowed: auto, fp32, bf16, fp16"),
    ("batch_size=0", "batch_size = 0: expected an integer >= 1"),
    ("stepz=3", "did you mean steps"),
    ("data.manifst=x", "did you mean data.manifest"),
    ("no_equals_sign", "expected key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ClinclipError) as err:
        TrainConfig.build("clip", [override])
    assert message in str(err.value)


def test_bad_model_and_loss_overrides_fail_clearly():
    cfg = TrainConfig.build("clip", ["model.text.pooling=max", "loss.taus.t=2"])
    with pytest.raises(ClinclipError, match="pooling"):
        cfg.model_config()
    with pytest.raises(ClinclipError, match="threshold"):
        cfg.loss_config()
    with pytest.raises(ClinclipError, match="unknown loss variant 'clip-xyz'"):
        TrainConfig.build("clip-xyz").loss_config()


def test_saved_config_reloads_identically(tmp_path):
    cfg = TrainConfig.build("con2", ["model=paper", "steps=7", "model.text.max_text_length=128", "seed=3"])
    path = cfg.save(tmp_path)
    assert path.name == "config.yaml"
    again = TrainConfig.build(str(path))
    assert again == cfg
    # a later override still wins over the file
    assert TrainConfig.build(str(path), ["steps=9"]).steps == 9


def test_variant_yaml_path_is_a_variant_not_a_config(tmp_path):
    from clinclip.losses import load_variant

    variant = load_variant("clip").to_dict()
    variant["name"] = "my-clip"
    path = tmp_path / "my-clip.yaml"
    path.write_text(yaml.safe_dump(variant))
    cfg = TrainConfig.build(str(path), ["model=tiny"])
    assert cfg.variant == str(path) and cfg.loss_config().name == "my-clip"


def test_warmup_then_cosine():
    f = warmup_cosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(9) == pytest.approx(0.55) and f(14) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


def test_no_weight_decay_on_biases_norms_and_logit_scale():
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.norm = nn.LayerNorm(4)
            self.logit_scale = nn.Parameter(torch.tensor(2.0))
            self.frozen = nn.Linear(4, 4)
            self.frozen.requires_grad_(False)

    model = Tiny()
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["params"] == [model.proj.weight] and decay["weight_decay"] == 0.1
    assert {id(p) for p in no_decay["params"]} == {id(model.proj.bias), id(model.norm.weight),
                                                   id(model.norm.bias), id(model.logit_scale)}
    assert no_decay["weight_decay"] == 0.0


def test_run_log_truncates_on_resume_and_feeds_tensorboard(tmp_path, monkeypatch):
    import json
    import sys
    import types

    from clinclip.train.loop import _RunLog

    scalars = []

    class FakeWriter:  # stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is optional)
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def close(self):
            scalars.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    rows = [{"event": "start", "step": 0}] + [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "lo')
    log = _RunLog(tmp_path, enabled=True, tensorboard=True, keep_until_step=2)
    assert [r["step"] for r in log.history] == [1, 2]  # steps after the checkpoint and the cut line are gone
    log.write({"step": 3, "loss": 0.5, "lr": 1e-3, "components": {"I-T": 0.25}})
    log.close()
    kept = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert kept == [1, 2, 3]
    assert ("train/loss", 0.5, 3) in scalars and ("loss/I-T", 0.25, 3) in scalars and scalars[-1] == "closed"
