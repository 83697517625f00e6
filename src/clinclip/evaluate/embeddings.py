"""Image and text embeddings, computed once and cached on disk.

Running every evaluation task on one model and one manifest must not re-encode the images: embeddings
are stored as ``.npy`` under a cache folder, keyed by a fingerprint of the model (its folder's config
files' content and its weight files' name/size/mtime, or the hub name) and of the rows encoded (the
manifest path, its mtime and the list of image paths). Text embeddings are keyed by the model and a
hash of the texts. A changed checkpoint or manifest gives a new key, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clinclip.errors import ClinclipError

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
    from clinclip.data.images import load_image

    return load_image


class EmbeddingStore:
    """Embeds images and texts with one encoder (a ``VisionLanguageEncoder``: ``preprocess``,
    ``encode_images``, ``encode_texts``), caching the results on disk when ``cache_dir`` is set."""

    def __init__(self, encoder, model_key: str, cache_dir: str | Path | None = None, batch_size: int = 32,
                 image_loader: Callable | None = None, progress: bool = True):
        self.encoder = encoder
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
        return self.cache_dir / self.model_key / f"{kind}-{key}.npy"

    @staticmethod
    def _save(path: Path | None, array: np.ndarray, meta: dict | None = None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache entry
        if meta is not None:
            path.with_suffix(".json").write_text(json.dumps(meta))

    # -- images --------------------------------------------------------------------------------------
    def image_embeddings(self, image_paths: Sequence[str], manifest: str | Path | None = None
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Embeddings (N x D float32; NaN rows where the image could not be read), a boolean mask of
        the rows that were read, and the count of unreadable images by reason."""
        import torch
        from tqdm.auto import tqdm

        h = hashlib.sha1()
        if manifest is not None:
            mp = Path(manifest)
            h.update(str(mp.resolve()).encode())
            if mp.exists():
                h.update(str(mp.stat().st_mtime_ns).encode())
        h.update(_texts_fingerprint(list(image_paths)).encode())
        cache = self._cache_path("images", h.hexdigest()[:16])
        if cache is not None and cache.exists():
            data = np.load(cache)
            meta = json.loads(cache.with_suffix(".json").read_text())
            return data, ~np.isnan(data).any(axis=1), meta.get("failures", {})

        loader = self._image_loader or _default_image_loader()
        failures: Counter = Counter()
        chunks: list[np.ndarray] = []
        ok = np.zeros(len(image_paths), dtype=bool)
        dim = None
        bar = tqdm(total=len(image_paths), desc="encoding images", unit="img", disable=not self.progress)
        for start in range(0, len(image_paths), self.batch_size):
            batch_paths = image_paths[start:start + self.batch_size]
            tensors, rows = [], []
            for offset, p in enumerate(batch_paths):
                try:
                    tensors.append(self.encoder.preprocess(loader(p)))
                    rows.append(offset)
                except (ClinclipError, OSError, ValueError) as err:
                    failures[f"unreadable image ({type(err).__name__})"] += 1
            out = None
            if tensors:
                with torch.no_grad():
                    out = self.encoder.encode_images(torch.stack(tensors)).float().cpu().numpy()
                dim = out.shape[1]
                self.encoded_images += len(tensors)
            chunks.append((start, len(batch_paths), rows, out))
            bar.update(len(batch_paths))
        bar.close()
        if dim is None:
            raise ClinclipError(f"none of the {len(image_paths)} images could be read "
                                f"({dict(failures)}); check image_path in {manifest}")
        result = np.full((len(image_paths), dim), np.nan, dtype=np.float32)
        for start, _n, rows, out in chunks:
            for j, offset in enumerate(rows):
                result[start + offset] = out[j]
                ok[start + offset] = True
        self._save(cache, result, {"n": len(image_paths), "failures": dict(failures),
                                   "manifest": str(manifest)})
        return result, ok, dict(failures)

    # -- texts ---------------------------------------------------------------------------------------
    def text_embeddings(self, texts: Sequence[str], desc: str = "encoding texts") -> np.ndarray:
        """Embeddings of the texts (N x D float32), cached by model and text content. Identical texts
        are encoded once."""
        import torch
        from tqdm.auto import tqdm

        texts = [str(t) for t in texts]
        if not texts:
            raise ClinclipError("no text to encode")
        cache = self._cache_path("texts", _texts_fingerprint(texts))
        if cache is not None and cache.exists():
            return np.load(cache)
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
        self._save(cache, result)
        return result


def open_store(model: str | Path, cache_dir: str | Path | None = None, batch_size: int = 32,
               device: str | None = None, progress: bool = True) -> EmbeddingStore:
    """Load any model (own checkpoint folder, HF CLIP/SigLIP folder or hub name, open_clip) through
    ``clinclip.models.load_encoder`` and wrap it in a cached store."""
    from clinclip.models import load_encoder

    kwargs = {"device": device} if device else {}
    encoder = load_encoder(str(model), **kwargs)
    return EmbeddingStore(encoder, model_fingerprint(model), cache_dir=cache_dir, batch_size=batch_size,
                          progress=progress)
