"""Training data: the rows of one split of a prepared manifest as a torch ``Dataset``, a collate that drops
unreadable images (counted, with their reason) and tokenises with the model's tokenizer, and a
``DistributedSampler`` that can start mid-epoch (resume).

Nothing is dropped silently: rows excluded up front (``skip_reason`` from the report pipeline, an empty text,
a missing hard negative / graph / unparseable labels when the variant needs them) are counted by reason in
``TrainingRows.excluded``; images that fail to load are counted per batch in ``batch["skipped"]``.

Every random augmentation of sample ``i`` in epoch ``e`` draws from its own generator seeded by
``(seed, e, i)``: the pixels do not depend on the number of workers, the rank layout or a resume.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, DistributedSampler

from clinclip.data.images import ImageReadError, load_image
from clinclip.data.store import is_store_ref, open_store, parse_store_ref, verify_stores
from clinclip.data.transforms import BatchImageTransform
from clinclip.errors import ClinclipError
from clinclip.manifest import LABEL_VALUES, SKIP_COLUMN, blank, read_manifest, select_split, skipped
from clinclip.observations import OBSERVATIONS

NUM_LABELS = len(OBSERVATIONS)
MISSING_IMAGE = "missing image file"
UNREADABLE_IMAGE = "unreadable image (corrupt or unsupported)"
MAX_EXAMPLES = 20  # skipped images listed by path in the summary


@dataclass
class TrainingRows:
    """The usable rows of a split, column by column, plus what was excluded and why."""

    manifest: Path
    split: str
    image_paths: list[str]
    texts: list[str]
    neg_texts: list[str] | None
    graphs: list[str] | None
    neg_graphs: list[str] | None
    labels: np.ndarray  # N x 14 float32, NaN = blank
    neg_labels: np.ndarray | None
    excluded: Counter = field(default_factory=Counter)
    rows_in_split: int = 0

    def __len__(self) -> int:
        return len(self.texts)


def _label_vector(value: Any) -> np.ndarray | None:
    """A 14-value label list (Parquet list, numpy array, or its text form in a CSV) -> float32[14], or None."""
    if isinstance(value, str):
        text = value.strip().strip("[]")
        try:
            value = [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            return None
    try:
        vector = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        return None
    if vector.shape != (NUM_LABELS,):
        return None
    if not np.all(np.isnan(vector) | np.isin(vector, LABEL_VALUES)):
        return None
    return vector


def load_training_rows(manifest: str | Path, split: str, needs: Sequence[str], image_root: str | Path | None = None,
                       max_rows: int | None = None) -> TrainingRows:
    """Select the usable rows of ``split``. ``needs`` is the loss variant's ``needed_inputs()``
    (``hard_negatives``, ``graphs``, ``labels``, ``neg_labels``)."""
    manifest = Path(manifest)
    frame = read_manifest(manifest, image_root)
    needs = set(needs)
    required = ["image_path", "split", "text"]
    if "hard_negatives" in needs:
        required.append("text_negated")
    if "graphs" in needs:
        required.append("graph")
        if "hard_negatives" in needs:
            required.append("graph_negated")
    if "labels" in needs:
        required += list(OBSERVATIONS)
    if "neg_labels" in needs:
        required.append("negated_labels")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{manifest}: missing column(s) {missing} that training with this variant needs "
                            f"(needs: {sorted(needs) or 'images and texts only'}); is this a prepared manifest "
                            "(`clinclip text prepare`)?")
    frame = select_split(frame, split, manifest)
    labels, bad_label_column = _observation_matrix(frame, manifest)
    n = len(frame)

    # Reasons in priority order: a row is counted once, under the first reason that applies.
    checks: list[tuple[str, np.ndarray]] = [(SKIP_COLUMN, skipped(frame)),
                                            ("no image_path", blank(frame["image_path"])),
                                            ("empty text", blank(frame["text"]))]
    if "hard_negatives" in needs:
        checks.append(("no hard negative (empty text_negated)", blank(frame["text_negated"])))
    if "graphs" in needs:
        checks.append(("no graph", blank(frame["graph"])))
        if "hard_negatives" in needs:
            checks.append(("no graph of the hard negative (empty graph_negated)", blank(frame["graph_negated"])))
    if "labels" in needs:
        checks.append(("unparseable label", np.array([c is not None for c in bad_label_column], dtype=bool)))
    neg_vectors: list[np.ndarray | None] = [None] * n
    if "neg_labels" in needs:
        neg_vectors = [_label_vector(v) for v in frame["negated_labels"]]
        checks.append(("unparseable negated_labels (expected 14 values in 1/0/-1/NaN)",
                       np.array([v is None for v in neg_vectors], dtype=bool)))
    excluded: Counter = Counter()
    taken = np.zeros(n, dtype=bool)
    for reason, mask in checks:
        new = mask & ~taken
        if reason == SKIP_COLUMN:
            excluded.update(f"skip_reason: {r}" for r in frame.loc[new, SKIP_COLUMN].astype(str))
        elif reason == "unparseable label":
            excluded.update(f"unparseable label in column {bad_label_column[i]!r}" for i in np.flatnonzero(new))
        else:
            excluded[reason] += int(new.sum())
        taken |= mask
    keep = np.flatnonzero(~taken).tolist()
    if max_rows is not None:
        keep = keep[:max_rows]

    def column(name: str) -> list[str]:
        values = frame[name].to_numpy()
        return [str(values[i]) for i in keep]

    return TrainingRows(
        manifest=manifest,
        split=split,
        image_paths=column("image_path"),
        texts=column("text"),
        neg_texts=column("text_negated") if "hard_negatives" in needs else None,
        graphs=column("graph") if "graphs" in needs else None,
        neg_graphs=column("graph_negated") if "graphs" in needs and "hard_negatives" in needs else None,
        labels=labels[keep] if keep else np.zeros((0, NUM_LABELS), np.float32),
        neg_labels=np.stack([neg_vectors[i] for i in keep]) if "neg_labels" in needs and keep else None,
        excluded=+excluded,
        rows_in_split=len(frame),
    )


def _observation_matrix(frame, manifest: Path) -> tuple[np.ndarray, list[str | None]]:
    """N x 14 float32 labels (NaN where blank or where a column is absent) and, per row, the first column whose
    value is not a CheXpert label value (None when the row is fine)."""
    n = len(frame)
    labels = np.full((n, NUM_LABELS), np.nan, dtype=np.float32)
    bad: list[str | None] = [None] * n
    for j, name in enumerate(OBSERVATIONS):
        if name not in frame.columns:
            continue
        raw = frame[name]
        numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        invalid = (np.isnan(numeric) & raw.notna().to_numpy()) | ~(np.isnan(numeric) | np.isin(numeric, LABEL_VALUES))
        for i in np.flatnonzero(invalid):
            if bad[i] is None:
                bad[i] = name
        labels[:, j] = np.where(invalid, np.nan, numeric)
    return labels, bad


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for the augmentation of one sample in one epoch."""
    low, high = (int(v) for v in np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32))
    return ((high << 32) | low) & ((1 << 63) - 1)


def store_batch_transform(image_paths, transform, verify: bool = True):
    """A ``BatchImageTransform`` when every image is a record of packed stores of one shape, else None
    (per-image loading). ``verify``: recompute the shards' checksums here (once per node: local rank 0);
    otherwise only their sizes are checked."""
    if not image_paths or not all(is_store_ref(p) for p in image_paths):
        return None
    folders = verify_stores(image_paths) if verify else sorted(
        {str(parse_store_ref(p)[0]) for p in image_paths})
    stores = [open_store(folder) for folder in folders]
    if len({store.shape for store in stores}) != 1:
        return None
    # CLAHE computed at prepare time is used when every store has it, with the transform's settings.
    wanted = {"clip_limit": float(transform.clahe_clip_limit), "grid": int(transform.clahe_grid)}
    in_store = transform.train and transform.clahe_p > 0 and all(store.clahe == wanted for store in stores)
    return BatchImageTransform(transform, clahe_in_store=in_store)


class ManifestDataset(Dataset):
    """Item ``i``: ``{"index", "pixel_values", "text", "labels", ...}``, or ``{"index", "skip", "path"}`` when the
    image cannot be read (the collate drops it and reports it).

    ``batched=True`` (images of one shape, from a packed image store): the item carries the stored uint8
    image (``image_uint8``) and its augmentation seed (``aug_seed``) instead of ``pixel_values``; a
    ``BatchImageTransform`` turns the whole batch into ``pixel_values`` (in the collate, or on the GPU).
    ``clahe_in_store``: the store holds each image's CLAHE plane; samples whose draw chooses CLAHE read it."""

    def __init__(self, rows: TrainingRows, transform, seed: int = 0, batched: bool = False,
                 clahe_in_store: bool = False):
        self.rows = rows
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.batched = batched
        self.clahe_in_store = clahe_in_store

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rows = self.rows
        path = rows.image_paths[index]
        seed = sample_seed(self.seed, self.epoch, index)
        try:
            if self.batched and self.clahe_in_store:
                folder, record = parse_store_ref(path)
                store = open_store(folder)
                plane = int(self.transform.draw(*store.shape, torch.Generator().manual_seed(seed)).clahe)
                image = store.read(record, plane)
            else:
                image = load_image(path)
            if self.batched:
                item = {"index": index, "image_uint8": torch.from_numpy(image), "aug_seed": seed}
            else:
                # Augmentation draws from a generator of its own (see the module docstring).
                item = {"index": index, "pixel_values": self.transform(image, generator=torch.Generator().manual_seed(seed))}
        except (ImageReadError, ClinclipError, OSError) as err:  # OSError: I/O below load_image's own checks
            reason = MISSING_IMAGE if not os.path.exists(path) and not is_store_ref(path) else UNREADABLE_IMAGE
            return {"index": index, "skip": reason, "path": path, "error": _first_line(err)}
        item.update({"text": rows.texts[index], "labels": torch.from_numpy(rows.labels[index])})
        if rows.neg_texts is not None:
            item["neg_text"] = rows.neg_texts[index]
        if rows.graphs is not None:
            item["graph"] = rows.graphs[index]
        if rows.neg_graphs is not None:
            item["neg_graph"] = rows.neg_graphs[index]
        if rows.neg_labels is not None:
            item["neg_labels"] = torch.from_numpy(rows.neg_labels[index])
        return item


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{err.__class__.__name__}: {text.splitlines()[0]}" if text else err.__class__.__name__


class TrainCollator:
    """List of dataset items -> the model's batch (keys of docs/ARCHITECTURE.md) + ``labels``, ``neg_labels``,
    ``indices`` and ``skipped`` (list of ``(path, reason, error)`` of the images dropped from this batch).

    Holds only the (picklable, fast) tokenizer, not the model, so it travels cheaply to loader workers.
    Batched items (``image_uint8``) become ``images_uint8`` + ``aug_seeds``, or ``pixel_values`` when a
    ``batch_transform`` is given (augmentation in the loader workers)."""

    def __init__(self, tokenizer, max_length: int, padding: bool | str = True, batch_transform=None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding = padding
        self.batch_transform = batch_transform

    @classmethod
    def for_model(cls, model, batch_transform=None) -> "TrainCollator":
        # SigLIP towers were trained on texts padded to full length (HfClipModel.tokenize does the same).
        padding = "max_length" if getattr(model, "kind", None) == "siglip" else True
        return cls(model.tokenizer, model.max_text_length, padding, batch_transform)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(texts, padding=self.padding, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
        ids = encoded["input_ids"]
        return {"input_ids": ids, "attention_mask": encoded.get("attention_mask", torch.ones_like(ids))}

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        good = [it for it in items if "skip" not in it]
        batch: dict[str, Any] = {
            "skipped": [(it["path"], it["skip"], it["error"]) for it in items if "skip" in it],
            "indices": torch.tensor([it["index"] for it in good], dtype=torch.long),
        }
        if not good:
            return batch
        if "image_uint8" in good[0]:
            images = torch.stack([it["image_uint8"] for it in good])
            seeds = torch.tensor([it["aug_seed"] for it in good], dtype=torch.long)
            if self.batch_transform is not None:
                batch["pixel_values"] = self.batch_transform(images, seeds.tolist())
            else:
                batch["images_uint8"], batch["aug_seeds"] = images, seeds
        else:
            batch["pixel_values"] = torch.stack([it["pixel_values"] for it in good])
        tokens = self.tokenize([it["text"] for it in good])
        batch["input_ids"], batch["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        batch["labels"] = torch.stack([it["labels"] for it in good])
        if "neg_text" in good[0]:
            neg = self.tokenize([it["neg_text"] for it in good])
            batch["neg_input_ids"], batch["neg_attention_mask"] = neg["input_ids"], neg["attention_mask"]
        if "graph" in good[0]:
            batch["graphs"] = [it["graph"] for it in good]
        if "neg_graph" in good[0]:
            batch["neg_graphs"] = [it["neg_graph"] for it in good]
        if "neg_labels" in good[0]:
            batch["neg_labels"] = torch.stack([it["neg_labels"] for it in good])
        return batch


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by ``(seed, epoch)``, rank ``r`` takes every N-th index, tail dropped so
    every rank has as many) that can skip the first ``start`` indices of this rank's epoch, for a resume."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:  # type: ignore[override]
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class SkippedImages:
    """Images that could not be used, by path (each counted once however many epochs meet it), and how many
    times a load failed in all."""

    def __init__(self) -> None:
        self.by_path: dict[str, tuple[str, str]] = {}  # path -> (reason, first error message)
        self.events = 0

    def add(self, path: str, reason: str, error: str) -> None:
        self.events += 1
        self.by_path.setdefault(path, (reason, error))

    def __len__(self) -> int:
        return len(self.by_path)

    def by_reason(self) -> Counter:
        return Counter(reason for reason, _ in self.by_path.values())

    def to_state(self) -> dict[str, Any]:
        """Plain lists, so a checkpoint holding it loads with ``torch.load(weights_only=True)``."""
        paths = list(self.by_path)
        return {"paths": paths, "reasons": [self.by_path[p][0] for p in paths],
                "errors": [self.by_path[p][1] for p in paths], "events": self.events}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "SkippedImages":
        out = cls()
        out.by_path = {p: (r, e) for p, r, e in zip(state["paths"], state["reasons"], state["errors"])}
        out.events = int(state["events"])
        return out

    @classmethod
    def merged(cls, parts: Sequence["SkippedImages"]) -> "SkippedImages":
        out = cls()
        for part in parts:
            for path, value in part.by_path.items():
                out.by_path.setdefault(path, value)
            out.events += part.events
        return out


def summarise_skipped(excluded: Counter, skipped: SkippedImages) -> dict[str, Any]:
    """JSON-ready summary of everything left out of training."""
    examples = list(skipped.by_path.items())[:MAX_EXAMPLES]
    return {
        "excluded_rows": sum(excluded.values()),
        "excluded_rows_by_reason": dict(excluded.most_common()),
        "skipped_images": len(skipped),
        "skipped_images_by_reason": dict(skipped.by_reason().most_common()),
        "skipped_image_loads": skipped.events,
        "skipped_image_examples": [{"path": p, "reason": r, "error": e} for p, (r, e) in examples],
    }
