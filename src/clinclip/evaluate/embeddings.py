"""Image and text embeddings, computed once and cached on disk.

Running every evaluation task on one model and one manifest must not re-encode the images: embeddings
are stored as ``.npy`` under a cache folder, keyed by a fingerprint of the model (its folder's config
files' content and its weight files' name/size/mtime, or the hub name) and of the manifest (its path and
mtime); the entry lists the image paths (rows) it holds and grows as tasks ask for more rows. Text
embeddings are keyed by the model and a hash of the texts. A changed checkpoint or manifest gives a new key,
so a stale cache is never read.

Every entry is ONE file (``.npz``: the embeddings and the paths of their rows together), written to a
temporary file of a unique name and renamed into place: runs sharing a cache at the same time (a SLURM
array) never read a half-written entry or rows that do not match their paths; the last writer's entry wins.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from clinclip.data.images import load_image
from clinclip.errors import ClinclipError
from clinclip.files import atomic_path
from clinclip.system import available_cpus
from clinclip.models import load_encoder

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLINCLIP_CACHE", Path.home() / ".cache" / "clinclip")) / "embeddings"


def model_fingerprint(model: str | Path) -> str:
    """Hash of what identifies a model's weights without reading them: the content of its JSON config
    files and the name, size and mtime of its weight files. A hub name (no local folder) hashes as is."""
    path = Path(model)
    h = hashlib.sha1()
    if path.is_dir():
        h.update(str(path.resolve()).encode())
        for file in sorted(path.rglob("*")):
            if not file.is_file():
                continue
            rel = str(file.relative_to(path))
            if file.suffix == ".json" and file.stat().st_size < 1_000_000:
                h.update(rel.encode() + file.read_bytes())
            elif file.suffix in WEIGHT_SUFFIXES:
                st = file.stat()
                h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
    elif path.is_file():
        st = path.stat()
        h.update(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        h.update(f"hub:{model}".encode())
    return h.hexdigest()[:16]


def _texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:16]


def _default_image_loader() -> Callable:
    return load_image


class EmbeddingStore:
    """Embeds images and texts with one encoder (a ``VisionLanguageEncoder``: ``preprocess``,
    ``encode_images``, ``encode_texts``), caching the results on disk when ``cache_dir`` is set."""

    def __init__(self, encoder, model_key: str, cache_dir: str | Path | None = None, batch_size: int = 32,
                 image_loader: Callable | None = None, progress: bool = True, num_workers: int | None = None):
        self.encoder = encoder
        # Images are read and preprocessed in DataLoader workers (None: the CPUs this process may use, one
        # left for this process, at most 8), never in this process unless num_workers = 0.
        self.num_workers = num_workers
        self.model_key = model_key
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self._image_loader = image_loader
        self.progress = progress
        self.encoded_images = 0  # how many images were actually run through the encoder (for tests/logs)
        self.encoded_texts = 0

    # -- cache files ---------------------------------------------------------------------------------
    def _cache_path(self, kind: str, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self.model_key / f"{kind}-{key}.npz"

    @staticmethod
    def _save(path: Path | None, **arrays: np.ndarray) -> None:
        """Write one cache entry atomically (unique temp name, then rename): concurrent writers never mix."""
        if path is None:
            return
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    @staticmethod
    def _load(path: Path | None) -> dict[str, np.ndarray] | None:
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):  # an entry from another version, or damaged: recompute
            return None

    # -- images --------------------------------------------------------------------------------------
    def _manifest_key(self, manifest: str | Path | None) -> str:
        h = hashlib.sha1()
        if manifest is not None:
            mp = Path(manifest)
            h.update(str(mp.resolve()).encode())
            if mp.exists():
                h.update(str(mp.stat().st_mtime_ns).encode())
        return h.hexdigest()[:16]

    def image_embeddings(self, image_paths: Sequence[str], manifest: str | Path | None = None
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Embeddings (N x D float32; NaN rows where the image could not be read), a boolean mask of
        the rows that were read, and the count of unreadable images by reason.

        One cache entry per (model, manifest path + mtime) holds every image of that manifest encoded so
        far (one ``.npz`` file: the table and the paths of its rows): a task that needs a subset of the
        rows, or another split, reuses what is there and encodes only the images not yet seen."""
        image_paths = [str(p) for p in image_paths]
        cache = self._cache_path("images", self._manifest_key(manifest))
        table = None
        known: dict[str, int] = {}
        failed: dict[str, str] = {}
        entry = self._load(cache)
        if entry is not None and len(entry["paths"]) == len(entry["embeddings"]):
            table = entry["embeddings"]
            known = {str(p): i for i, p in enumerate(entry["paths"])}
            # failures are not reused: a repaired image is read again on the next run
        todo = list(dict.fromkeys(p for p in image_paths if p not in known and p not in failed))
        if todo:
            new_table, new_failed = self._encode_images(todo, manifest)
            if table is None:
                table = new_table
            elif new_table is not None:
                if new_table.shape[1] != table.shape[1]:
                    raise ClinclipError(f"embedding cache {cache}: width {table.shape[1]} != {new_table.shape[1]}")
                table = np.concatenate([table, new_table])
            encoded = [p for p in todo if p not in new_failed]
            known.update({p: len(known) + i for i, p in enumerate(encoded)})
            failed.update(new_failed)
            if table is not None:
                self._save(cache, embeddings=table, paths=np.array(list(known), dtype=str))
        if table is None:
            reasons = Counter(failed[p] for p in image_paths if p in failed)
            raise ClinclipError(f"none of the {len(image_paths)} images could be read ({dict(reasons)}); "
                                f"check image_path in {manifest}")
        result = np.full((len(image_paths), table.shape[1]), np.nan, dtype=np.float32)
        ok = np.array([p in known for p in image_paths], dtype=bool)
        if ok.any():
            result[ok] = table[[known[p] for p in image_paths if p in known]]
        failures = Counter(failed[p] for p in image_paths if p in failed)
        return result, ok, dict(failures)

    def _encode_images(self, paths: list[str], manifest) -> tuple[np.ndarray | None, dict[str, str]]:
        """Encode images in batches with a progress bar: (table of the readable ones in order, or None
        when none could be read; {path: reason} of the unreadable ones). Reading and preprocessing run in
        DataLoader workers (a packed image store's records are read without decoding)."""
        workers = self.num_workers if self.num_workers is not None else min(8, available_cpus() - 1)
        dataset = _PreprocessedImages(paths, self._image_loader or _default_image_loader(),
                                      getattr(self.encoder, "transform", None) or self.encoder.preprocess)
        loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                                             num_workers=max(0, workers), collate_fn=_as_list)
        failed: dict[str, str] = {}
        parts: list[np.ndarray] = []
        bar = tqdm(total=len(paths), desc="encoding images", unit="img", disable=not self.progress)
        for items in loader:
            failed.update({paths[i]: error for i, _, error in items if error is not None})
            tensors = [tensor for _, tensor, error in items if error is None]
            if tensors:
                with torch.no_grad():
                    parts.append(self.encoder.encode_images(torch.stack(tensors)).float().cpu().numpy())
                self.encoded_images += len(tensors)
            bar.update(len(items))
        bar.close()
        return (np.concatenate(parts).astype(np.float32) if parts else None), failed

    # -- texts ---------------------------------------------------------------------------------------
    def text_embeddings(self, texts: Sequence[str], desc: str = "encoding texts") -> np.ndarray:
        """Embeddings of the texts (N x D float32), cached by model and text content. Identical texts
        are encoded once."""
        texts = [str(t) for t in texts]
        if not texts:
            raise ClinclipError("no text to encode")
        cache = self._cache_path("texts", _texts_fingerprint(texts))
        entry = self._load(cache)
        if entry is not None and len(entry["embeddings"]) == len(texts):
            return entry["embeddings"]
        unique = list(dict.fromkeys(texts))
        index = {t: i for i, t in enumerate(unique)}
        parts = []
        show = self.progress and len(unique) > self.batch_size
        for start in tqdm(range(0, len(unique), self.batch_size), desc=desc, disable=not show):
            with torch.no_grad():
                parts.append(self.encoder.encode_texts(unique[start:start + self.batch_size])
                             .float().cpu().numpy())
        self.encoded_texts += len(unique)
        table = np.concatenate(parts, axis=0)
        result = table[[index[t] for t in texts]].astype(np.float32)
        self._save(cache, embeddings=result)
        return result


class _PreprocessedImages:
    """Item i: (i, preprocessed tensor, None) or (i, None, reason) for an unreadable image."""

    def __init__(self, paths: list[str], loader: Callable, preprocess: Callable):
        self.paths, self.loader, self.preprocess = paths, loader, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, self.preprocess(self.loader(self.paths[index])), None
        except (ClinclipError, OSError, ValueError) as err:
            return index, None, f"unreadable image ({type(err).__name__})"


def _as_list(items):
    return items


def open_store(model: str | Path, cache_dir: str | Path | None = None, batch_size: int = 32,
               device: str | None = None, progress: bool = True) -> EmbeddingStore:
    """Load any model (own checkpoint folder, HF CLIP/SigLIP folder or hub name, open_clip) through
    ``clinclip.models.load_encoder`` and wrap it in a cached store."""
    kwargs = {"device": device} if device else {}
    encoder = load_encoder(str(model), **kwargs)
    return EmbeddingStore(encoder, model_fingerprint(model), cache_dir=cache_dir, batch_size=batch_size,
                          progress=progress)
