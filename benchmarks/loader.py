"""Training image loader throughput: the same phantom images through (a) the PNG path and (b) the packed
image store, with the training augmentation, the same batch size and workers, in one run; and the
memory-copy limit of the store measured in the same run.

    python benchmarks/loader.py [--n 2000] [--size 256] [--crop 224] [--batch 64] [--workers 2] [--epochs 2]

(a) PNG: a ``DataLoader`` whose workers run ``load_image`` (PNG decode) + ``ImageTransform(crop, train=True)``
    (random resized crop, CLAHE with p = 0.5, brightness/contrast jitter) per image: what training does on a
    ``prepare-images --format png`` manifest.
(b) store: workers read the stored uint8 records (no decoding) and the collate runs
    ``BatchImageTransform`` (the same augmentation, batched): what training does on a ``--format store``
    manifest on a CPU (on a GPU the batch is augmented on the device instead).
(b') the same with a store written with ``--clahe``: CLAHE read from the stored plane, not computed.
(c) memory-copy limit: the store's records copied into batch tensors in one process, no augmentation.
(d) the store loader as it runs beside a GPU: workers hand over uint8 batches, the augmentation runs on the
    device (not timed here: there is no GPU on the CPU machine this is meant for).

Target on a 2-core machine: store >= 2,000 images/s and >= 15x the PNG path. Both loaders produce the same
float batches (N x 3 x crop x crop, normalised).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


class PngImages:
    """(a): path -> PNG decode -> per-image training transform."""

    def __init__(self, paths: list[str], crop: int):
        from clinclip.data.transforms import ImageTransform

        self.paths = paths
        self.transform = ImageTransform(crop, train=True, clahe_p=0.5)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        import torch

        from clinclip.data.images import load_image

        return self.transform(load_image(self.paths[index]), generator=torch.Generator().manual_seed(index))


class StoreRecords:
    """(b): record -> stored uint8 image (memory-mapped, no decoding) and its augmentation seed; from a store
    with a CLAHE plane, the plane the sample's CLAHE draw asks for (as ``ManifestDataset`` does)."""

    def __init__(self, store_dir: str, crop: int):
        from clinclip.data.transforms import ImageTransform

        self.store_dir = store_dir
        self.size = len(self._store())
        self.transform = ImageTransform(crop, train=True, clahe_p=0.5)

    def _store(self):
        from clinclip.data.store import open_store

        return open_store(self.store_dir)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        import torch

        store = self._store()
        plane = 0
        if store.planes == 2:
            plane = int(self.transform.draw(*store.shape, torch.Generator().manual_seed(index)).clahe)
        return torch.from_numpy(store.read(index, plane)), index

    def __getitems__(self, indices: list[int]):
        """A whole batch in one call (the DataLoader uses this when it exists): one copy per plane."""
        import torch

        store = self._store()
        planes = np.zeros(len(indices), dtype=np.int64)
        if store.planes == 2:
            planes = np.array([self.transform.draw(*store.shape, torch.Generator().manual_seed(i)).clahe
                               for i in indices], dtype=np.int64)
        images = np.empty((len(indices), *store.shape), dtype=np.uint8)
        for plane in np.unique(planes):
            where = np.flatnonzero(planes == plane)
            images[where] = store.read_many(np.asarray(indices)[where], int(plane))
        return [(image, seed) for image, seed in zip(torch.from_numpy(images), indices)]


class BatchAugment:
    """(b)'s collate: stack the records, augment the batch."""

    def __init__(self, crop: int, clahe_in_store: bool):
        from clinclip.data.transforms import BatchImageTransform, ImageTransform

        self.transform = BatchImageTransform(ImageTransform(crop, train=True, clahe_p=0.5), clahe_in_store)

    def __call__(self, items):
        import torch

        images = torch.stack([image for image, _ in items])
        return self.transform(images, [seed for _, seed in items])


def stack_uint8(items):
    """(d)'s collate: the records as one uint8 batch (what the workers hand to a GPU-side augmentation)."""
    import torch

    return torch.stack([image for image, _ in items])


def loader_rate(dataset, batch: int, workers: int, epochs: int, collate=None) -> tuple[float, tuple]:
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0, drop_last=False, prefetch_factor=4 if workers else None)
    shape = tuple(next(iter(loader)).shape)  # start the workers outside the timed part
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images in loader:
            seen += images.shape[0]
    return seen / (time.perf_counter() - start), shape


def copy_rate(store_dir: str, batch: int, epochs: int) -> float:
    """Records copied from the memory-mapped shards into batch tensors, shuffled, one process."""
    import torch

    from clinclip.data.store import open_store

    store = open_store(store_dir)
    rng = np.random.default_rng(0)
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(store))
        for i in range(0, len(order), batch):
            out = torch.from_numpy(store.read_many(order[i:i + batch]))
            seen += out.shape[0]
    return seen / (time.perf_counter() - start)


def write_phantom_pngs(folder: Path, n: int, size: int) -> list[str]:
    """The first ``n`` phantom radiographs (seed 0) as ``size``² PNGs; images already in ``folder`` are kept
    (rendering is the slow part: reuse a folder with --images)."""
    from clinclip.data.images import save_image_uint8
    from clinclip.phantom.render import render_image
    from clinclip.phantom.studies import PhantomConfig, sample_collection

    specs, _ = sample_collection(PhantomConfig(n_studies=n, image_size=size))
    paths = []
    for spec in specs[:n]:
        path = folder / f"{spec.dicom_id}.png"
        if not path.is_file():
            save_image_uint8(render_image(spec, 0, size), path)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="prepared (stored) image side")
    parser.add_argument("--crop", type=int, default=224, help="training crop")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="passes of the store loader (the PNG path: 1)")
    parser.add_argument("--images", type=Path, default=None, help="folder to keep (and reuse) the rendered PNGs")
    args = parser.parse_args()

    import pandas as pd
    import torch

    from clinclip.data.prepare_store import write_store

    torch.set_num_threads(1)  # one thread per loader process, as in training
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        pngs = write_phantom_pngs(args.images or tmp / "png", args.n, args.size)
        render_s = time.perf_counter() - t0
        manifest = tmp / "m.parquet"
        pd.DataFrame({"image_path": pngs, "split": "train", "report": "x"}).to_parquet(manifest)
        summary = write_store(manifest, tmp / "store", size=args.size, workers=args.workers, progress=False)
        with_clahe = write_store(manifest, tmp / "store_clahe", size=args.size, workers=args.workers,
                                 progress=False, clahe=True)
        assert not summary.failed and not with_clahe.failed
        png_rate, png_shape = loader_rate(PngImages(pngs, args.crop), args.batch, args.workers, 1)
        rates = {}
        for name, clahe_in_store in (("store", False), ("store_clahe", True)):
            rates[name], shape = loader_rate(StoreRecords(str(tmp / name), args.crop), args.batch, args.workers,
                                             args.epochs, BatchAugment(args.crop, clahe_in_store))
            assert shape == png_shape, (shape, png_shape)
        limit = copy_rate(str(tmp / "store"), args.batch, max(3, args.epochs))
        uint8_rate, _ = loader_rate(StoreRecords(str(tmp / "store_clahe"), args.crop), args.batch, args.workers,
                                    max(3, args.epochs), stack_uint8)

    load = os.getloadavg()[0]
    print(f"{args.n} phantom images, {args.size}² PNG / store records -> training crop {args.crop}, batch "
          f"{args.batch}, {args.workers} workers; {len(os.sched_getaffinity(0))} CPUs, load average {load:.1f} "
          f"(rendered in {render_s:.0f} s, store written in {summary.seconds:.1f} s, with CLAHE plane "
          f"{with_clahe.seconds:.1f} s)")
    print(f"{'path':56} {'images/s':>9} {'x PNG':>6}")
    print(f"{'(a) PNG decode + per-image augmentation':56} {png_rate:9.0f} {1:6.1f}")
    for name, label in (("store", "(b) store + batched augmentation (CLAHE per crop)"),
                        ("store_clahe", "(b') store with CLAHE plane + batched augmentation")):
        print(f"{label:56} {rates[name]:9.0f} {rates[name] / png_rate:6.1f}")
    print(f"{'(c) store memory-copy limit (no augmentation)':56} {limit:9.0f} {limit / png_rate:6.1f}")
    print(f"{'(d) store loader, uint8 batches (augmentation on a GPU)':56} {uint8_rate:9.0f} "
          f"{uint8_rate / png_rate:6.1f}")
    store_rate = max(rates.values())
    ratio = store_rate / png_rate
    print(f"best store / PNG: {ratio:.1f}x (target >= 15x: {'met' if ratio >= 15 else 'NOT met'}); store "
          f"{store_rate:.0f} images/s (target >= 2,000: {'met' if store_rate >= 2000 else 'NOT met'}); "
          f"store at {100 * store_rate / limit:.1f}% of the memory-copy limit")


if __name__ == "__main__":
    main()
