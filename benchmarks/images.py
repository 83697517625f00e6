"""Image pipeline throughput: ``prepare-images`` on full-size DICOMs, then a training-style loader on the
prepared PNGs.

    python benchmarks/images.py [--n 32] [--side 2048] [--size 256] [--workers 2] [--batch 64] [--crop 224]

1. Writes ``--n`` synthetic 16-bit DICOMs of ``--side``² pixels (12 bits stored; a mix of MONOCHROME2 and
   MONOCHROME1, with and without Window Center/Width), the size of a real digital radiograph.
2. Times ``prepare_images`` (decode + modality/VOI LUT + resize to a ``--size`` shorter side + PNG) with
   ``--workers`` processes: images/s.
3. Times a training-style ``DataLoader`` (``--workers`` workers, batch ``--batch``) reading the prepared
   PNGs with ``load_image`` + ``ImageTransform(--crop, train=True)`` (random resized crop, CLAHE with
   p=0.5, jitter): images/s. Target: >= ~110 images/s, which keeps a ``tiny`` training step of ~0.6 s per
   batch of 64 busy.
4. For reference, the same loader on the full-size DICOMs (what training would cost without step 2).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def write_dicoms(folder: Path, n: int, side: int) -> list[Path]:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    body = (np.exp(-((xx - 0.5) ** 2 / 0.08 + (yy - 0.55) ** 2 / 0.12)) * 3000 + 500).astype(np.float32)
    paths = []
    for i in range(n):
        pixels = np.clip(body + rng.normal(0, 60, body.shape), 0, 4095).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"img{i:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.ViewPosition = "DX", f"P{i}", "PA"
        ds.Rows = ds.Columns = side
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
        ds.PhotometricInterpretation = "MONOCHROME1" if i % 2 else "MONOCHROME2"
        if i % 4 < 2:
            ds.WindowCenter, ds.WindowWidth = 2048, 3000
        ds.PixelData = pixels.tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


class _Images:
    """The training-style dataset: path -> load_image -> ImageTransform (picklable for workers)."""

    def __init__(self, paths: list[str], crop: int):
        from clinclip.data.transforms import ImageTransform

        self.paths = paths
        self.transform = ImageTransform(crop, train=True, clahe_p=0.5)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from clinclip.data.images import load_image

        return self.transform(load_image(self.paths[index]))


def loader_rate(paths: list[str], crop: int, batch: int, workers: int, epochs: int) -> float:
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)  # as in a worker-fed training process: one thread per worker
    loader = DataLoader(_Images(paths, crop), batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, drop_last=False)
    next(iter(loader))  # start the workers outside the timed part
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images in loader:
            seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4, help="loader passes over the prepared images")
    parser.add_argument("--skip-raw", action="store_true", help="skip the loader-on-DICOM reference row")
    args = parser.parse_args()

    from clinclip.data.prepare_images import prepare_images

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "dcm").mkdir()
        t0 = time.perf_counter()
        dicoms = write_dicoms(tmp / "dcm", args.n, args.side)
        write_s = time.perf_counter() - t0
        manifest = tmp / "m.parquet"
        pd.DataFrame({"image_path": [str(p) for p in dicoms], "image_id": [p.stem for p in dicoms],
                      "study_id": [p.stem for p in dicoms], "patient_id": [p.stem for p in dicoms],
                      "split": "train", "view": "PA", "report": "Normal."}).to_parquet(manifest)
        summary = prepare_images(manifest, tmp / "png", size=args.size, workers=args.workers, progress=False)
        assert not summary.failed, summary.failed
        prep_rate = args.n / summary.seconds
        prepared = pd.read_parquet(summary.manifest)["image_path"].tolist()
        png_rate = loader_rate(prepared, args.crop, args.batch, args.workers, args.epochs)
        raw_rate = None if args.skip_raw else loader_rate([str(p) for p in dicoms], args.crop, args.batch,
                                                          args.workers, 1)

    rows = [
        ("prepare-images: DICOM -> PNG", f"{args.n} x {args.side}² 16-bit DICOM, {args.workers} workers, "
                                         f"shorter side {args.size}", prep_rate),
        ("loader on prepared PNGs", f"load_image + ImageTransform({args.crop}, train), batch {args.batch}, "
                                    f"{args.workers} workers", png_rate),
    ]
    if raw_rate is not None:
        rows.append(("loader on raw DICOMs (reference)", "same loader, full-size DICOMs", raw_rate))
    print(f"(wrote the {args.n} DICOMs in {write_s:.1f} s)")
    print(f"{'stage':36} {'images/s':>9}  conditions")
    for name, cond, rate in rows:
        print(f"{name:36} {rate:9.1f}  {cond}")
    verdict = "meets" if png_rate >= 110 else "BELOW"
    print(f"loader {verdict} the ~110 images/s a tiny step of ~0.6 s per batch of 64 needs")


if __name__ == "__main__":
    main()
