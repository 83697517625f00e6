"""Fine-tuned classification (paper Table 2, FT10 / FT100): train on 10% and 100% of the train split,
test on the evaluation split, several fixed seeds, mean ± std over the seeds.

Two methods:
- ``linear``: a linear probe on the frozen image embeddings (scikit-learn LogisticRegression; one per
  class for binary prompt files, one multinomial model for multiclass files). Embeddings come from the
  cache, so this is fast.
- ``full``: the image encoder itself is trained together with a linear head (torch, AdamW, a few
  epochs; CPU-capable). Binary files use one sigmoid output per class, multiclass files a softmax.
The label definitions (columns, subset filter, binary/multiclass) come from the same prompt file as
zero-shot; prompts themselves are not used.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from clinclip.errors import ClinclipError
from clinclip.evaluate import metrics
from clinclip.evaluate.classification import (apply_prompt_filter, binary_targets, multiclass_targets,
                                              left_out_of_mean, score_predictions)
from clinclip.evaluate.data import label_matrix
from clinclip.evaluate.prompts import PromptSet


def subsample(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seeded subset of ``fraction`` of ``n`` row indices (at least one row), sorted."""
    rng = np.random.default_rng(seed)
    k = max(1, int(round(fraction * n)))
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def linear_probe_scores(prompts: PromptSet, train_x: np.ndarray, train_labels: np.ndarray,
                        test_x: np.ndarray, seed: int, max_iter: int = 1000) -> tuple[dict, list[str]]:
    """Fit the probe(s) and score the test rows: {class: positive probability or class score}."""
    notes: list[str] = []
    scores: dict[str, np.ndarray] = {}
    if prompts.kind == "binary":
        for k, cls in enumerate(prompts.classes):
            y, usable = binary_targets(train_labels[:, k])
            if len(np.unique(y[usable])) < 2:
                notes.append(f"{cls.name}: the training subset holds one class only; no probe fitted")
                scores[cls.name] = np.full(len(test_x), np.nan)
                continue
            clf = LogisticRegression(max_iter=max_iter, random_state=seed)
            clf.fit(train_x[usable], y[usable])
            scores[cls.name] = clf.predict_proba(test_x)[:, 1]
    else:
        y, usable = multiclass_targets(train_labels)
        present = np.unique(y[usable])
        if len(present) < 2:
            raise ClinclipError("the training subset has fewer than two classes; cannot fit a probe")
        clf = LogisticRegression(max_iter=max_iter, random_state=seed)
        clf.fit(train_x[usable], y[usable])
        proba = clf.predict_proba(test_x)
        for k, cls in enumerate(prompts.classes):
            col = np.where(clf.classes_ == k)[0]
            scores[cls.name] = proba[:, col[0]] if len(col) else np.full(len(test_x), -np.inf)
    return scores, notes


def _trainable_parameters(encoder):
    """The parameters of the encoder's torch module, made trainable (evaluation encoders freeze them).
    Only the image path receives gradients, so only the image side moves."""
    module = encoder if isinstance(encoder, torch.nn.Module) else None
    for name in ("model", "image_model", "vision_model"):
        if module is None and isinstance(getattr(encoder, name, None), torch.nn.Module):
            module = getattr(encoder, name)
    if module is None:
        raise ClinclipError("this encoder exposes no torch module to fine-tune; use --method linear")
    params = list(module.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def _image_features(encoder, pixels):
    """Differentiable, L2-normalised image embeddings (``encode_images`` runs without autograd)."""
    return torch.nn.functional.normalize(encoder.image_embeddings(pixels).float(), dim=-1)


def full_finetune_scores(encoder, prompts: PromptSet, train_paths: list[str], train_labels: np.ndarray,
                         test_paths: list[str], seed: int, epochs: int = 3, lr: float = 1e-5,
                         head_lr: float = 1e-3, batch_size: int = 16, image_loader=None,
                         progress: bool = True) -> tuple[dict, list[str]]:
    """Fine-tune a copy of the encoder's image side with a linear head; return test scores."""
    if image_loader is None:
        from clinclip.data.images import load_image as image_loader
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = copy.deepcopy(encoder)
    params = _trainable_parameters(enc)
    binary = prompts.kind == "binary"
    if binary:
        targets = (train_labels == 1.0).astype(np.float32)
        weights = (train_labels != -1.0).astype(np.float32)  # uncertain labels do not train
    else:
        y, usable = multiclass_targets(train_labels)
        keep = np.where(usable)[0]
        train_paths = [train_paths[i] for i in keep]
        targets = y[keep]
    n_out = len(prompts.classes)

    def load_batch(paths):
        return torch.stack([enc.preprocess(image_loader(p)) for p in paths])

    with torch.no_grad():
        dim = enc.encode_images(load_batch(train_paths[:1])).shape[1]
    device = getattr(enc, "device", torch.device("cpu"))
    head = torch.nn.Linear(dim, n_out).to(device)
    optim = torch.optim.AdamW([{"params": params, "lr": lr}, {"params": head.parameters(), "lr": head_lr}],
                              weight_decay=1e-4)
    for module in (getattr(enc, "model", None), enc):
        if isinstance(module, torch.nn.Module):
            module.train()
    steps = epochs * ((len(train_paths) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc=f"fine-tuning (seed {seed})", disable=not progress)
    for _epoch in range(epochs):
        order = rng.permutation(len(train_paths))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            with torch.enable_grad():
                feats = _image_features(enc, load_batch([train_paths[i] for i in idx]))
                if not feats.requires_grad:
                    raise ClinclipError("the encoder's encode_images is not differentiable; "
                                        "use --method linear")
                logits = head(feats.float().to(device))
                if binary:
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        logits, torch.from_numpy(targets[idx]).to(device),
                        weight=torch.from_numpy(weights[idx]).to(device))
                else:
                    loss = torch.nn.functional.cross_entropy(
                        logits, torch.from_numpy(targets[idx]).long().to(device))
                optim.zero_grad()
                loss.backward()
                optim.step()
            bar.update(1)
    bar.close()
    for module in (getattr(enc, "model", None), enc):
        if isinstance(module, torch.nn.Module):
            module.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(test_paths), batch_size):
            logits = head(enc.encode_images(load_batch(test_paths[start:start + batch_size])).float().to(device))
            outs.append(torch.sigmoid(logits) if binary else torch.softmax(logits, dim=1))
    proba = torch.cat(outs).cpu().numpy()
    return {cls.name: proba[:, k] for k, cls in enumerate(prompts.classes)}, []


def finetune(store, train_frame: pd.DataFrame, test_frame: pd.DataFrame, prompts: PromptSet,
             manifest: str | Path = "manifest", method: str = "linear", fractions=(0.1, 1.0),
             seeds=(0, 1, 2), epochs: int = 3, lr: float = 1e-5, batch_size: int = 16) -> dict:
    """FT10 / FT100 (or any fractions) with the linear probe or full fine-tuning."""
    if method not in ("linear", "full"):
        raise ClinclipError(f"--method must be linear or full, got {method!r}")
    train_frame, skipped = apply_prompt_filter(train_frame, prompts, manifest)
    test_frame, more = apply_prompt_filter(test_frame, prompts, manifest)
    skipped = {f"train: {k}": v for k, v in skipped.items()} | {f"test: {k}": v for k, v in more.items()}
    train_labels = label_matrix(train_frame, prompts.columns, manifest)
    test_labels = label_matrix(test_frame, prompts.columns, manifest)
    train_x, train_ok, fail = store.image_embeddings(list(train_frame["image_path"]), manifest)
    skipped |= {f"train: {k}": v for k, v in fail.items()}
    test_x, test_ok, fail = store.image_embeddings(list(test_frame["image_path"]), manifest)
    skipped |= {f"test: {k}": v for k, v in fail.items()}
    train_rows = np.where(train_ok)[0]
    if len(train_rows) == 0:
        raise ClinclipError(f"{manifest}: no readable training image")
    notes: list[str] = []
    runs: dict[str, list[dict]] = {}
    summary: dict[str, dict] = {}
    for fraction in fractions:
        label = f"FT{int(round(fraction * 100))}"
        runs[label] = []
        for seed in seeds:
            pick = train_rows[subsample(len(train_rows), fraction, seed)]
            if method == "linear":
                scores, run_notes = linear_probe_scores(prompts, train_x[pick], train_labels[pick],
                                                        np.nan_to_num(test_x), seed)
            else:
                scores, run_notes = full_finetune_scores(
                    store.encoder, prompts, [train_frame["image_path"][i] for i in pick], train_labels[pick],
                    list(test_frame["image_path"][test_ok]), seed, epochs=epochs, lr=lr,
                    batch_size=batch_size, image_loader=store._image_loader, progress=store.progress)
                scores = {k: _scatter(v, test_ok) for k, v in scores.items()}
            notes += [f"{label} seed {seed}: {n}" for n in run_notes]
            headline, per_class, _ = score_predictions(prompts, test_labels, scores, test_ok)
            left_out = left_out_of_mean(per_class, prompts.kind)
            notes += [f"{label} seed {seed}: {c} is left out of the mean over classes: {why}"
                      for c, why in left_out.items()]
            runs[label].append({"seed": seed, "n_train": int(len(pick)), **headline, "per_class": per_class,
                                "classes_left_out_of_mean": left_out})
        summary[label] = {key: metrics.mean_std([r[key] for r in runs[label]])
                          for key in ("score", "accuracy", "auc", "macro_accuracy") if key in runs[label][0]}
    rows = [[label, s["score"]["mean"], s["score"]["std"], runs[label][0]["n_train"], len(seeds)]
            for label, s in summary.items()]
    return {
        "task": "finetune", "dataset": prompts.name, "prompts": prompts.source, "method": method,
        "headline_metric": prompts.metric, "seeds": list(seeds), "fractions": list(fractions),
        "metrics": {label: s["score"]["mean"] for label, s in summary.items()},
        "summary": summary, "runs": runs,
        "table": {"columns": ["setting", f"{prompts.metric.upper()} mean", "std", "n train (count)",
                              "seeds (count)"], "rows": rows},
        "skipped": skipped, "notes": notes,
    }


def _scatter(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.full(len(mask), np.nan)
    out[mask] = values
    return out
