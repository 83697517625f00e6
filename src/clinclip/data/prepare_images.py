"""``prepare-images``: decode every image of a manifest once (DICOM windowing included), shrink it so its
shorter side is ``size`` pixels, and store it as an 8-bit grayscale PNG, so training never decodes a
full-size DICOM again.

Layout: ``OUT/<2 hex>/<image_id>_<10 hex>.png`` where the hex digits are the SHA-1 of the source path
(unique even when image ids repeat across datasets; the 2-level fan-out keeps folders small). Individual
PNG files rather than shards: the manifest stays one row -> one file, any tool can open them, and a
resumed run simply skips files that exist (each is written to a temp file and renamed, so an existing file
is always complete). The updated manifest (default ``OUT/manifest.parquet``) is the input manifest with
``image_path`` pointing at the PNG and the original kept in ``source_image_path``; images that fail to
decode are left out of it and listed, with the reason, in ``<manifest stem>.skipped.csv``.

``--format store`` writes a packed image store instead (``clinclip.data.store``): fixed-size arrays in a few
memory-mapped shards, read at memory speed by the training and evaluation loaders.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from clinclip.data.images import ImageReadError, load_image, resize_shorter_side, save_image_uint8
from clinclip.data.prepare import MANIFEST_SUFFIXES, skipped_path
from clinclip.errors import ClinclipError
from clinclip.manifest import read_manifest, write_manifest
from clinclip.outputs import check_output
from clinclip.system import available_cpus


@dataclass
class PrepareImagesSummary:
    images: int
    written: int
    already_done: int
    failed: dict[str, str]  # source path -> reason
    manifest: Path
    skipped_file: Path
    seconds: float


def target_path(out_dir: Path, image_path: str, image_id: str) -> Path:
    digest = hashlib.sha1(str(image_path).encode()).hexdigest()
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", str(image_id))[:80] or "image"
    return out_dir / digest[:2] / f"{safe_id}_{digest[2:12]}.png"


def _convert(job: tuple[str, str, int]) -> tuple[str, str]:
    """(source, target, size) -> ('written'|'failed', message). Runs in a worker process."""
    source, target, size = job
    try:
        image = resize_shorter_side(load_image(source), size)
        save_image_uint8(image, target)
        return "written", ""
    except ImageReadError as err:
        return "failed", err.cause
    except Exception as err:  # noqa: BLE001 - one bad image must not stop the run; reported by file
        return "failed", f"{type(err).__name__}: {err}"


def prepare_images(manifest: str | os.PathLike, out_dir: str | os.PathLike, size: int = 256, workers: int | None = None,
                   out_manifest: str | os.PathLike | None = None, progress: bool = True,
                   overwrite: bool = False) -> PrepareImagesSummary:
    """Write resized PNGs for every row of ``manifest`` into ``out_dir`` (resumable: PNGs already there are
    kept) and the updated manifest (replaced only with ``overwrite``; never the input manifest)."""
    if size < 8:
        raise ClinclipError(f"prepare-images: --size must be at least 8 pixels, got {size}")
    start = time.perf_counter()
    check_output(out_dir, folder=True, overwrite=True, inputs=[manifest])
    target = Path(out_manifest) if out_manifest else Path(out_dir) / "manifest.parquet"
    check_output(target, overwrite=overwrite, inputs=[manifest], suffixes=MANIFEST_SUFFIXES,
                 also=[skipped_path(target)], option="--out-manifest")
    frame = read_manifest(manifest)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out_manifest = Path(out_manifest) if out_manifest else out_dir / "manifest.parquet"
    targets = [str(target_path(out_dir, p, i)) for p, i in zip(frame["image_path"], frame["image_id"])]
    todo = [(src, dst, size) for src, dst in zip(frame["image_path"], targets) if not os.path.isfile(dst)]
    already = len(frame) - len(todo)
    failed: dict[str, str] = {}
    written = 0
    workers = available_cpus() if workers is None else max(1, int(workers))
    bar = tqdm(total=len(todo), desc="prepare-images", unit="img", disable=not progress or not todo)
    if workers == 1 or len(todo) <= 1:
        results = map(_convert, todo)
        executor = None
    else:
        executor = ProcessPoolExecutor(max_workers=workers)
        results = executor.map(_convert, todo, chunksize=max(1, min(64, len(todo) // (workers * 8) or 1)))
    try:
        for (source, _, _), (status, message) in zip(todo, results):
            if status == "written":
                written += 1
            else:
                failed[source] = message
            bar.update(1)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)

    frame["source_image_path"] = frame["image_path"]
    frame["image_path"] = targets
    ok = ~frame["source_image_path"].isin(failed.keys())
    ids_by_source = dict(zip(frame["source_image_path"], frame["image_id"].astype(str)))
    skipped = pd.DataFrame({"dataset": "prepare-images", "source": list(failed.keys()),
                            "key": [ids_by_source.get(s, "") for s in failed],
                            "image_path": list(failed.keys()),
                            "reason": [f"image could not be read: {m}" for m in failed.values()]},
                           columns=["dataset", "source", "key", "image_path", "reason"])
    write_manifest(frame[ok].reset_index(drop=True), out_manifest)
    side = skipped_path(out_manifest)
    write_manifest(skipped, side)
    return PrepareImagesSummary(images=len(frame), written=written, already_done=already, failed=failed,
                                manifest=out_manifest, skipped_file=side, seconds=time.perf_counter() - start)
