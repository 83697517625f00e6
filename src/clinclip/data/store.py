"""The packed image store: every prepared image as a fixed-size ``size × size`` uint8 array in a few large
shard files that are memory-mapped, so training and evaluation read pixels without decoding anything.

Layout of a store folder (written by ``clinclip prepare-images --format store``)::

    store.json              format, record shape (planes × height × width), and per shard: file, records,
                            bytes, CRC-32
    index.parquet           record -> image_id, source_image_path, shard, offset (bytes), height, width,
                            source_height, source_width
    shards/shard-00000.bin  records back to back (planes × height × width bytes each, row-major)
    shards/shard-00000.json that shard's index rows and failures (the unit of resumption)

An image is referenced from a manifest as ``<store folder>/store.json#<record>`` (``store_ref``);
``clinclip.data.images.load_image`` reads such a path from the store, so every loader accepts it.

Each image is decoded once (DICOM windowing included), its shorter side resized to ``size`` and the centre
``size × size`` square kept: chest radiographs are close to square and the training crop and the evaluation
centre crop both work inside that square. A fixed record size is what makes a shard a plain array and a
batch of records a single tensor (batched augmentation, ``BatchImageTransform``).

With ``clahe=True`` every record holds a second plane: the image after CLAHE (deterministic, so computed
once here instead of on every epoch's crop). Training with CLAHE probability p then reads the CLAHE plane for
the samples whose draw chose CLAHE; everything else (``load_image``, evaluation) reads plane 0, the image.

Shard ``k`` holds the readable images of manifest rows ``[k·R, (k+1)·R)`` (R = ``rows_per_shard``). It is
written to a temporary file and renamed once complete, then its ``.json`` is written: a rerun skips every
shard whose ``.json`` exists and whose data file has the recorded size, so an interrupted run resumes.
Opening a store checks every shard's size (a truncated shard is named in a one-line error); ``verify=
"checksum"`` also recomputes each shard's CRC-32 (about 1 GB/s per core).
"""

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
from clinclip.data.transforms import clahe
from clinclip.errors import ClinclipError
from clinclip.files import atomic_path, write_text_atomic
from clinclip.manifest import read_manifest, write_manifest
from clinclip.system import available_cpus

STORE_FORMAT = "clinclip-image-store"
STORE_VERSION = 1
STORE_META = "store.json"
INDEX_FILE = "index.parquet"
SHARD_DIR = "shards"
REF_SEPARATOR = "#"
VERIFY_MODES = ("size", "checksum")
_CHUNK_BYTES = 1 << 24


def store_ref(store_dir: str | os.PathLike, record: int) -> str:
    """The manifest ``image_path`` of one record: ``<store folder>/store.json#<record>``."""
    return f"{Path(store_dir) / STORE_META}{REF_SEPARATOR}{int(record)}"


def parse_store_ref(path: str | os.PathLike) -> tuple[Path, int] | None:
    """(store folder, record) of a ``store_ref`` path; None for an ordinary image path."""
    text = str(path)
    head, sep, tail = text.rpartition(REF_SEPARATOR)
    if not sep or not tail.isdigit() or not head.endswith(STORE_META):
        return None
    return Path(head).parent, int(tail)


def is_store_ref(path: str | os.PathLike) -> bool:
    return parse_store_ref(path) is not None


def _crc32_of_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


# --- reading ----------------------------------------------------------------------------------------


class ImageStore:
    """A store opened for reading: ``len(store)`` records of ``store.shape`` uint8, read by record number.
    Shards are memory-mapped on first use (per process, so it is safe in DataLoader workers)."""

    def __init__(self, directory: str | os.PathLike, verify: str = "size"):
        if verify not in VERIFY_MODES:
            raise ClinclipError(f"image store: verify = {verify!r}; allowed: {', '.join(VERIFY_MODES)}")
        self.directory = Path(directory)
        meta_path = self.directory / STORE_META
        if not meta_path.is_file():
            raise ClinclipError(f"{meta_path}: image store not found (write it with `clinclip prepare-images "
                                "--format store`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ClinclipError(f"{meta_path}: unreadable image store metadata ({err})") from None
        if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
            raise ClinclipError(f"{meta_path}: not a {STORE_FORMAT} version {STORE_VERSION} file")
        self.meta = meta
        self.shape = (int(meta["height"]), int(meta["width"]))
        self.planes = int(meta.get("planes", 1))
        self.clahe = meta.get("clahe")  # {"clip_limit", "grid"} of plane 1, or None
        self.record_bytes = self.planes * self.shape[0] * self.shape[1]
        self.shard_paths = [self.directory / SHARD_DIR / s["file"] for s in meta["shards"]]
        for path, shard in zip(self.shard_paths, meta["shards"]):
            size = path.stat().st_size if path.is_file() else None
            if size is None:
                raise ClinclipError(f"{path}: image store shard is missing")
            if size != shard["bytes"]:
                raise ClinclipError(f"{path}: image store shard is truncated or damaged ({size} bytes, expected "
                                    f"{shard['bytes']}); rerun `clinclip prepare-images --format store` to rewrite it")
            if verify == "checksum" and _crc32_of_file(path) != shard["crc32"]:
                raise ClinclipError(f"{path}: image store shard fails its checksum (CRC-32 differs from "
                                    f"{STORE_META}); rerun `clinclip prepare-images --format store` to rewrite it")
        index = pd.read_parquet(self.directory / INDEX_FILE, columns=["shard", "offset"])
        self._shard = index["shard"].to_numpy(np.int32)
        self._offset = index["offset"].to_numpy(np.int64)
        self._maps: list[np.memmap | None] = [None] * len(self.shard_paths)

    def __len__(self) -> int:
        return len(self._shard)

    def index(self):
        """The full index table (pandas)."""
        return pd.read_parquet(self.directory / INDEX_FILE)

    def _map(self, shard: int) -> np.memmap:
        mapped = self._maps[shard]
        if mapped is None:
            count = self.meta["shards"][shard]["records"]
            shape = (count, self.planes, *self.shape)
            mapped = np.memmap(self.shard_paths[shard], dtype=np.uint8, mode="r", shape=shape) if count \
                else np.zeros(shape, np.uint8)
            self._maps[shard] = mapped
        return mapped

    def _check(self, record: int) -> None:
        if not 0 <= record < len(self):
            raise ClinclipError(f"{self.directory / STORE_META}: record {record} out of range (the store holds "
                                f"{len(self)} images)")

    def read(self, record: int, plane: int = 0) -> np.ndarray:
        """A copy of one record's plane (uint8, ``shape``): 0 the image, 1 its CLAHE (stores with ``clahe``)."""
        self._check(record)
        if not 0 <= plane < self.planes:
            raise ClinclipError(f"{self.directory / STORE_META}: plane {plane} asked for; the store has {self.planes}")
        shard = int(self._shard[record])
        return np.array(self._map(shard)[self._offset[record] // self.record_bytes, plane])

    def read_many(self, records, plane: int = 0) -> np.ndarray:
        """N records' plane as one ``N × H × W`` uint8 array (a single copy per shard)."""
        records = np.asarray(records, dtype=np.int64)
        out = np.empty((len(records), *self.shape), dtype=np.uint8)
        if len(records) == 0:
            return out
        if records.min() < 0 or records.max() >= len(self):
            self._check(int(records.min() if records.min() < 0 else records.max()))
        shards = self._shard[records]
        for shard in np.unique(shards):
            where = np.flatnonzero(shards == shard)
            out[where] = self._map(int(shard))[self._offset[records[where]] // self.record_bytes, plane]
        return out


_OPEN: dict[tuple[str, int], ImageStore] = {}


def open_store(directory: str | os.PathLike, verify: str = "size") -> ImageStore:
    """The store at ``directory``, opened once per process (cached by path and pid: forked workers reopen)."""
    key = (str(Path(directory).resolve()), os.getpid())
    store = _OPEN.get(key)
    if store is None or verify == "checksum":
        store = ImageStore(directory, verify=verify)
        _OPEN[key] = store
    return store


def read_store_image(path: str | os.PathLike, plane: int = 0) -> np.ndarray:
    """The uint8 image (or, ``plane=1``, its stored CLAHE) of a ``store_ref`` path."""
    parsed = parse_store_ref(path)
    if parsed is None:
        raise ClinclipError(f"{path}: not an image store reference (<folder>/{STORE_META}#<record>)")
    directory, record = parsed
    return open_store(directory).read(record, plane)


def verify_stores(paths) -> list[Path]:
    """Open every store the image paths refer to with full checksum verification; the store folders."""
    folders = sorted({str(p[0]) for p in map(parse_store_ref, paths) if p is not None})
    for folder in folders:
        open_store(folder, verify="checksum")
    return [Path(f) for f in folders]


# --- writing ----------------------------------------------------------------------------------------


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
