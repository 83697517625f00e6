"""The packed image store: bit-exact round trip, resumption, truncation and checksum errors, manifests that
every loader reads (``load_image`` on a store reference), and the batched training augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clinclip.data.images import ImageReadError, load_image, save_image_uint8
from clinclip.data.prepare_store import square_record, write_store
from clinclip.data.store import ImageStore, open_store, parse_store_ref
from clinclip.errors import ClinclipError


def _manifest(tmp_path: Path, n: int = 7, size: int = 24) -> tuple[Path, list[np.ndarray]]:
    """PNGs of varied shapes (some smaller than the store size), one unreadable file."""
    rng = np.random.default_rng(0)
    images, paths = [], []
    for i in range(n):
        shape = (size + 3 * i, size + 5 - i) if i % 3 else (size - 6, size - 2)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        path = save_image_uint8(image, tmp_path / "png" / f"im{i}.png")
        images.append(image)
        paths.append(str(path))
    bad = tmp_path / "png" / "bad.png"
    bad.write_bytes(b"not a png")
    paths.insert(3, str(bad))
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"image_path": paths, "image_id": [Path(p).stem for p in paths], "split": "train",
                  "report": "Normal."}).to_csv(manifest, index=False)
    return manifest, images


def test_store_round_trips_every_image_bit_exactly(tmp_path):
    manifest, images = _manifest(tmp_path)
    summary = write_store(manifest, tmp_path / "store", size=16, workers=1, rows_per_shard=3, progress=False)
    assert summary.shards == 3 and summary.written == 7 and list(summary.failed) == [str(tmp_path / "png" / "bad.png")]
    out = pd.read_parquet(summary.manifest)
    assert len(out) == 7 and "bad" not in " ".join(out["source_image_path"])
    skipped = pd.read_csv(summary.skipped_file)
    assert len(skipped) == 1 and skipped["reason"][0].startswith("image could not be read")
    store = ImageStore(tmp_path / "store", verify="checksum")
    assert len(store) == 7 and store.shape == (16, 16)
    expected = [square_record(im, 16) for im in images]
    for row, image in zip(out.itertuples(), expected):
        ref = str(tmp_path / "store" / row.image_path)
        assert np.array_equal(load_image(ref), image)  # every loader path reads the store through load_image
        assert load_image(ref).dtype == np.uint8
    records = [parse_store_ref(p)[1] for p in out["image_path"]]
    assert np.array_equal(store.read_many(records[::-1]), np.stack(expected[::-1]))
    index = store.index()
    assert list(index["image_id"]) == [f"im{i}" for i in range(7)]
    assert set(index["shard"]) == {0, 1, 2} and (index["offset"] % 256 == 0).all()


def test_square_record_keeps_the_centre_of_the_shorter_side_resize():
    image = np.tile(np.arange(40, dtype=np.uint8), (20, 1))  # 20 x 40, columns 0..39
    record = square_record(image, 20)  # no resize needed: the centre 20 columns
    assert np.array_equal(record, image[:, 10:30])
    assert square_record(np.zeros((5, 9), np.uint8), 12).shape == (12, 12)  # small images are enlarged


def test_truncated_shard_is_detected_and_named_and_a_rerun_repairs_it(tmp_path):
    manifest, _ = _manifest(tmp_path)
    write_store(manifest, tmp_path / "store", size=16, workers=1, rows_per_shard=3, progress=False)
    shard = tmp_path / "store" / "shards" / "shard-00001.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    with pytest.raises(ClinclipError) as err:
        ImageStore(tmp_path / "store")
    message = str(err.value)
    assert str(shard) in message and "truncated" in message and "\n" not in message
    # A flipped byte keeps the size: only the checksum finds it.
    shard.write_bytes(data[:10] + bytes([data[10] ^ 1]) + data[11:])
    ImageStore(tmp_path / "store")  # size check passes
    with pytest.raises(ClinclipError, match="shard-00001.bin: image store shard fails its checksum"):
        ImageStore(tmp_path / "store", verify="checksum")
    # Resume rewrites only the damaged shard (its size no longer matches its sidecar).
    shard.write_bytes(data[:-100])
    summary = write_store(manifest, tmp_path / "store", size=16, workers=1, rows_per_shard=3, progress=False)
    assert summary.written == 2 and summary.already_done == 5
    assert shard.read_bytes() == data
    ImageStore(tmp_path / "store", verify="checksum")


def test_clahe_plane_holds_the_training_clahe_of_each_image(tmp_path):
    from clinclip.data.prepare_store import clahe_uint8
    from clinclip.data.store import read_store_image

    manifest, _ = _manifest(tmp_path)
    summary = write_store(manifest, tmp_path / "store", size=16, workers=1, progress=False, clahe=True)
    store = open_store(tmp_path / "store", verify="checksum")
    assert store.planes == 2 and store.clahe == {"clip_limit": 2.0, "grid": 8}
    ref = str(summary.manifest.parent / pd.read_parquet(summary.manifest)["image_path"][4])
    image = load_image(ref)  # plane 0: the image itself
    assert np.array_equal(read_store_image(ref, plane=1), clahe_uint8(image, 2.0, 8))
    assert not np.array_equal(read_store_image(ref, plane=1), image)
    assert np.array_equal(store.read_many([4, 0], plane=1)[0], read_store_image(ref, plane=1))


def test_store_of_another_manifest_needs_overwrite(tmp_path):
    manifest, _ = _manifest(tmp_path)
    write_store(manifest, tmp_path / "store", size=16, workers=1, progress=False)
    with pytest.raises(ClinclipError, match="another manifest or size"):
        write_store(manifest, tmp_path / "store", size=12, workers=1, progress=False)
    summary = write_store(manifest, tmp_path / "store", size=12, workers=1, progress=False, overwrite=True)
    assert open_store(tmp_path / "store", verify="checksum").shape == (12, 12) and summary.written == 7


def test_missing_store_reads_as_an_image_error(tmp_path):
    with pytest.raises(ImageReadError, match="image store not found"):
        load_image(tmp_path / "nowhere" / "store.json#3")


def test_cli_prepare_images_format_store(tmp_path):
    from typer.testing import CliRunner

    from clinclip.cli.main import app

    manifest, _ = _manifest(tmp_path)
    result = CliRunner().invoke(app, ["prepare-images", "--manifest", str(manifest), "--out", str(tmp_path / "s"),
                                      "--size", "16", "--workers", "1", "--format", "store"])
    assert result.exit_code == 0, result.output
    assert "7 written" in result.output and "1 failed" in result.output
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["records"] == 7 and meta["height"] == 16
    bad = CliRunner().invoke(app, ["prepare-images", "--manifest", str(manifest), "--out", str(tmp_path / "t"),
                                   "--format", "zip"])
    assert bad.exit_code == 2 and "--format 'zip'" in bad.output


def test_batched_clahe_equals_the_per_image_clahe():
    from clinclip.data.transforms import clahe

    g = torch.Generator().manual_seed(0)
    batch = torch.rand(3, 1, 37, 50, generator=g)
    together = clahe(batch, 2.0, 8)
    for i in range(3):
        torch.testing.assert_close(together[i:i + 1], clahe(batch[i:i + 1], 2.0, 8), rtol=0, atol=1e-6)


def test_batched_augmentation_draws_what_the_per_image_transform_draws():
    from clinclip.data.transforms import BatchImageTransform, ImageTransform

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 32, 32), dtype=np.uint8)
    seeds = [11, 12, 13, 14, 15]
    # Output larger than every crop: both resample bilinearly without antialiasing, so the interiors agree
    # (the edge pixels differ: the per-image path clamps at the crop's border, the batched one at the image's).
    transform = ImageTransform(48, train=True, clahe_p=0.0, brightness=0.2, contrast=0.2)
    batched = BatchImageTransform(transform)(torch.from_numpy(images), seeds)
    assert batched.shape == (5, 3, 48, 48)
    for i, seed in enumerate(seeds):
        single = transform(images[i], generator=torch.Generator().manual_seed(seed))
        unclamped = (single > single.min()) & (single < single.max())  # clamping at 0/1 differs at the edges
        inner = (slice(None), slice(2, -2), slice(2, -2))
        torch.testing.assert_close(batched[i][inner][unclamped[inner]], single[inner][unclamped[inner]],
                                   rtol=0, atol=1e-3)  # the contrast centre includes the edges
    # CLAHE decided per image from the same seed; evaluation mode is a plain batched resize.
    transform = ImageTransform(48, train=True, clahe_p=0.5)
    picks = [transform.draw(32, 32, torch.Generator().manual_seed(s)).clahe for s in range(20)]
    assert 0 < sum(picks) < 20
    evaluated = BatchImageTransform(ImageTransform(16))(torch.from_numpy(images))
    torch.testing.assert_close(evaluated[2], ImageTransform(16)(images[2]), rtol=0, atol=1e-5)
    with pytest.raises(ClinclipError, match="one seed per image"):
        BatchImageTransform(transform)(torch.from_numpy(images), seeds[:2])


@pytest.mark.slow
def test_training_reads_a_store_manifest_with_batched_augmentation(tmp_path):
    """The same rows trained from PNGs and from a packed store: both train, and the store run uses the
    batched path (the stored records, augmented in the collate on a CPU)."""
    from clinclip.data.prepare_store import write_store
    from clinclip.train import TrainConfig, run_training
    from clinclip.train.data import store_batch_transform
    from train_helpers import make_prepared_manifest, small_overrides

    prepared = make_prepared_manifest(tmp_path, n_rows=8)
    summary = write_store(prepared, tmp_path / "store", size=40, workers=1, progress=False)
    rows = pd.read_parquet(summary.manifest)
    assert list(rows["text"]) == list(pd.read_parquet(prepared)["text"])  # the prepared columns are kept
    values = small_overrides(summary.manifest, tmp_path / "run", steps=3, **{"data.augment": True,
                                                                             "model.graph.enabled": False})
    result = run_training(TrainConfig.from_presets("tiny", "clip", values))
    assert [r["step"] for r in result.history] == [1, 2, 3] and result.summary["skipped_images"] == 0
    from clinclip.data.transforms import ImageTransform

    paths = [str(summary.manifest.parent / p) for p in rows["image_path"]]
    assert store_batch_transform(paths, ImageTransform(32, train=True)) is not None
    assert store_batch_transform(paths[:-1] + [str(prepared)], ImageTransform(32)) is None
