"""Writing a packed image store (``clinclip prepare-images --format store``); the layout, resumption and
verification are described in ``clinclip.data.store``, which reads it."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from clinclip.data.images import ImageReadError, load_image, resize_shorter_side
from clinclip.data.prepare import skipped_path
from clinclip.data.store import INDEX_FILE, SHARD_DIR, STORE_FORMAT, STORE_META, STORE_VERSION, store_ref
from clinclip.data.transforms import clahe
from clinclip.errors import ClinclipError
from clinclip.files import atomic_path, write_text_atomic
from clinclip.manifest import read_manifest, write_manifest
from clinclip.system import available_cpus


@dataclass
class StoreSummary:
    images: int
    written: int  # images written by this run
    already_done: int  # images in shards a previous run completed
    failed: dict[str, str]  # source path -> reason
    store: Path
    shards: int
    manifest: Path
    skipped_file: Path
    seconds: float


def square_record(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (Lanczos, enlarging small images too), then the centre ``size × size``."""
    height, width = image.shape
    if min(height, width) < size:
        scale = size / min(height, width)
        image = np.array(Image.fromarray(image).resize((max(size, round(width * scale)),
                                                        max(size, round(height * scale))),
                                                       Image.Resampling.LANCZOS), dtype=np.uint8)
    else:
        image = resize_shorter_side(image, size)
    height, width = image.shape
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def clahe_uint8(image: np.ndarray, clip_limit: float, grid: int) -> np.ndarray:
    """CLAHE of a uint8 image (the training transform's ``clahe``), rounded back to uint8."""
    x = torch.from_numpy(image).float().div_(255.0)[None, None]
    return clahe(x, clip_limit, grid)[0, 0].mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def _decode(job: tuple[str, int, dict | None]) -> tuple[np.ndarray | None, tuple[int, int], str]:
    """(source, size, CLAHE settings or None) -> (planes × size × size record or None, source shape, failure
    message). Runs in a worker process."""

    source, size, clahe = job
    try:
        image = load_image(source)
        record = square_record(image, size)
        planes = [record] if clahe is None else [record, clahe_uint8(record, clahe["clip_limit"], clahe["grid"])]
        return np.stack(planes), image.shape, ""
    except ImageReadError as err:
        return None, (0, 0), err.cause
    except Exception as err:  # noqa: BLE001 - one bad image must not stop the run; reported by file
        return None, (0, 0), f"{type(err).__name__}: {err}"


def _manifest_fingerprint(sources: list[str], size: int, rows_per_shard: int, clahe: dict | None) -> str:
    h = hashlib.sha1(f"{size}:{rows_per_shard}:{json.dumps(clahe, sort_keys=True)}\n".encode())
    for s in sources:
        h.update(s.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def write_store(manifest: str | os.PathLike, out_dir: str | os.PathLike, size: int = 256,
                workers: int | None = None, out_manifest: str | os.PathLike | None = None,
                rows_per_shard: int | None = None, shard_bytes: int = 1 << 30, progress: bool = True,
                overwrite: bool = False, clahe: bool = False, clahe_clip_limit: float = 2.0,
                clahe_grid: int = 8) -> StoreSummary:
    """Pack every image of ``manifest`` into a store at ``out_dir`` (resumable; see the module docstring)
    and write the manifest pointing at it (default ``out_dir/manifest.parquet``; ``source_image_path`` keeps
    the original). Images that fail to decode are left out and listed in ``<manifest stem>.skipped.csv``."""
    if size < 8:
        raise ClinclipError(f"prepare-images: --size must be at least 8 pixels, got {size}")
    start = time.perf_counter()
    frame = read_manifest(manifest)
    if "image_id" not in frame.columns:
        frame["image_id"] = [Path(p).stem for p in frame["image_path"]]
    out_dir = Path(out_dir).resolve()
    out_manifest = Path(out_manifest) if out_manifest else out_dir / "manifest.parquet"
    clahe_settings = {"clip_limit": float(clahe_clip_limit), "grid": int(clahe_grid)} if clahe else None
    planes = 2 if clahe else 1
    record_bytes = planes * size * size
    rows_per_shard = int(rows_per_shard or max(1, shard_bytes // record_bytes))
    sources = [str(p) for p in frame["image_path"]]
    fingerprint = _manifest_fingerprint(sources, size, rows_per_shard, clahe_settings)
    shard_dir = out_dir / SHARD_DIR
    plan_path = out_dir / "store.plan.json"
    if plan_path.is_file() or (out_dir / STORE_META).is_file():
        previous = json.loads(plan_path.read_text()) if plan_path.is_file() else {}
        if previous.get("fingerprint") != fingerprint:
            if not overwrite:
                raise ClinclipError(f"{out_dir}: holds an image store of another manifest or size; choose another "
                                    "--out or pass --overwrite to rebuild it")
            for old in shard_dir.glob("shard-*"):
                old.unlink()
            (out_dir / STORE_META).unlink(missing_ok=True)
    shard_dir.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps({"fingerprint": fingerprint, "size": size, "rows_per_shard": rows_per_shard}))

    n_shards = max(1, -(-len(frame) // rows_per_shard))
    workers = available_cpus() if workers is None else max(1, int(workers))
    executor = ProcessPoolExecutor(max_workers=workers) if workers > 1 and len(frame) > 1 else None
    written = already = 0
    failed: dict[str, str] = {}
    shard_entries: list[dict] = []
    bar = tqdm(total=len(frame), desc="prepare-images (store)", unit="img", disable=not progress)
    try:
        for k in range(n_shards):
            rows = range(k * rows_per_shard, min(len(frame), (k + 1) * rows_per_shard))
            name = f"shard-{k:05d}"
            data_path, side_path = shard_dir / f"{name}.bin", shard_dir / f"{name}.json"
            done = _completed_shard(data_path, side_path)
            if done is None:
                done = _write_shard(data_path, side_path, [sources[i] for i in rows], list(rows), size,
                                    clahe_settings, executor, workers, bar)
                written += len(done["records"])
            else:
                already += len(done["records"])
                bar.update(len(rows))
            failed.update(done["failed"])
            shard_entries.append(done)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)

    index_rows, refs = [], {}
    for k, entry in enumerate(shard_entries):
        for position, (row, src_h, src_w) in enumerate(entry["records"]):
            refs[row] = len(index_rows)
            index_rows.append({"image_id": str(frame["image_id"].iloc[row]), "source_image_path": sources[row],
                               "shard": k, "offset": position * record_bytes, "height": size, "width": size,
                               "source_height": src_h, "source_width": src_w})
    index = pd.DataFrame(index_rows, columns=["image_id", "source_image_path", "shard", "offset", "height",
                                              "width", "source_height", "source_width"])
    write_manifest(index, out_dir / INDEX_FILE)
    meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "height": size, "width": size, "planes": planes,
            "clahe": clahe_settings, "dtype": "uint8", "records": len(index), "rows_per_shard": rows_per_shard,
            "shards": [{"file": f"shard-{k:05d}.bin", "records": len(e["records"]), "bytes": e["bytes"],
                        "crc32": e["crc32"]} for k, e in enumerate(shard_entries)]}
    write_text_atomic(out_dir / STORE_META, json.dumps(meta, indent=1) + "\n")

    ok = np.array([i in refs for i in range(len(frame))], dtype=bool)
    base = out_manifest.resolve().parent
    rel_store = Path(os.path.relpath(out_dir, base))
    kept = frame[ok].copy()
    kept["source_image_path"] = kept["image_path"]
    kept["image_path"] = [store_ref(rel_store, refs[i]) for i in np.flatnonzero(ok)]
    ids_by_source = dict(zip(sources, frame["image_id"].astype(str)))
    skipped = pd.DataFrame({"dataset": "prepare-images", "source": list(failed), "key": [ids_by_source.get(s, "")
                            for s in failed], "image_path": list(failed),
                            "reason": [f"image could not be read: {m}" for m in failed.values()]},
                           columns=["dataset", "source", "key", "image_path", "reason"])
    write_manifest(kept.reset_index(drop=True), out_manifest)
    side = skipped_path(out_manifest)
    write_manifest(skipped, side)
    return StoreSummary(images=len(frame), written=written, already_done=already, failed=failed, store=out_dir,
                        shards=n_shards, manifest=out_manifest, skipped_file=side,
                        seconds=time.perf_counter() - start)


def _completed_shard(data_path: Path, side_path: Path) -> dict | None:
    """The sidecar of a shard a previous run finished, or None when it must be (re)written."""
    if not side_path.is_file() or not data_path.is_file():
        return None
    try:
        entry = json.loads(side_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return entry if data_path.stat().st_size == entry.get("bytes") else None


def _write_shard(data_path: Path, side_path: Path, sources: list[str], rows: list[int], size: int,
                 clahe: dict | None, executor, workers: int, bar) -> dict:
    jobs = [(s, size, clahe) for s in sources]
    results = (executor.map(_decode, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 8) or 1)))
               if executor is not None else map(_decode, jobs))
    crc, n_bytes = 0, 0
    records: list[tuple[int, int, int]] = []
    failed: dict[str, str] = {}
    with atomic_path(data_path) as tmp, open(tmp, "wb") as handle:
        for row, source, (record, shape, message) in zip(rows, sources, results):
            bar.update(1)
            if record is None:
                failed[source] = message
                continue
            data = record.tobytes()
            handle.write(data)
            crc = zlib.crc32(data, crc)
            n_bytes += len(data)
            records.append((row, int(shape[0]), int(shape[1])))
        handle.flush()
        os.fsync(handle.fileno())
    # The sidecar last: a shard counts as done only once its data file is complete (see _completed_shard).
    entry = {"records": records, "failed": failed, "bytes": n_bytes, "crc32": crc}
    write_text_atomic(side_path, json.dumps(entry))
    return entry
