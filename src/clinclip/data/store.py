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

Writing is ``clinclip.data.prepare_store.write_store``. Shard ``k`` holds the readable images of manifest rows ``[k·R, (k+1)·R)`` (R = ``rows_per_shard``). It is
written to a temporary file and renamed once complete, then its ``.json`` is written: a rerun skips every
shard whose ``.json`` exists and whose data file has the recorded size, so an interrupted run resumes.
Opening a store checks every shard's size (a truncated shard is named in a one-line error); ``verify=
"checksum"`` also recomputes each shard's CRC-32 (about 1 GB/s per core).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError

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
