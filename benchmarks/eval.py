"""Evaluation throughput from cached embeddings: CXR-Align scoring of 10,000 triplets and image -> report
retrieval over 10,000 reports (targets: under 10 s each).

The embeddings are random unit vectors (D = 512, the paper's width) produced by a stand-in encoder and
written to the on-disk cache by an untimed warm-up run; the timed runs build a fresh store on the same
cache, so they measure what a user pays when every task reuses the cached embeddings: cache reads,
similarity matrices in chunks, ranks, label P/R/F1 and the de-duplicated pass.

    python benchmarks/eval.py [--n 10000] [--dim 512]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clinclip.evaluate.cxr_align import score_benchmark
from clinclip.evaluate.embeddings import EmbeddingStore
from clinclip.evaluate.retrieval import report_retrieval
from clinclip.observations import OBSERVATIONS


class RandomEncoder:
    """Deterministic random unit vectors: images by id (carried through a 1x1 'image'), texts by hash."""

    def __init__(self, dim: int):
        self.dim = dim

    def _vec(self, key: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return torch.tensor([[[float(image[0, 0])]]])

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._vec(f"img{int(p.item())}") for p in pixels]))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._vec(t) for t in texts]))


def id_loader(path: str) -> np.ndarray:
    return np.array([[int(Path(path).stem[3:])]], dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    n, rng = args.n, np.random.default_rng(0)
    labels = np.where(rng.random((n, len(OBSERVATIONS))) < 0.15, 1.0, np.nan)
    frame = pd.DataFrame(labels, columns=list(OBSERVATIONS))
    frame["image_id"] = [f"img{i}" for i in range(n)]
    frame["image_path"] = [f"/virtual/img{i}.png" for i in range(n)]
    frame["study_id"] = [f"s{i}" for i in range(n)]
    # ~20% templated duplicates, as in the paper's Table 1
    frame["text"] = [f"Report {i // 5 if i % 5 == 0 else i}: findings." for i in range(n)]
    bench = {"mimic": {f"img{i}": {"report": f"Report {i}.", "negation": f"No finding {i}. Report {i}.",
                                   "omitted": f"Omitted {i}.", "chosen": "Edema"} for i in range(n)}}
    manifest = "/virtual/manifest.parquet"
    with tempfile.TemporaryDirectory() as cache:
        def fresh_store() -> EmbeddingStore:
            return EmbeddingStore(RandomEncoder(args.dim), "bench", cache_dir=cache, batch_size=512,
                                  image_loader=id_loader, progress=False)

        t0 = time.perf_counter()
        score_benchmark(fresh_store(), bench, frame, manifest)
        report_retrieval(fresh_store(), frame, manifest, labeler="manifest")
        warm = time.perf_counter() - t0

        rows = []
        for name, run in (("CXR-Align scoring", lambda s: score_benchmark(s, bench, frame, manifest)),
                          ("report retrieval", lambda s: report_retrieval(s, frame, manifest, labeler="manifest"))):
            store = fresh_store()
            t0 = time.perf_counter()
            result = run(store)
            elapsed = time.perf_counter() - t0
            assert store.encoded_images == 0 and store.encoded_texts == 0, "cache was not used"
            rows.append((name, n, elapsed, result["metrics"]))
    print(f"warm-up (encode + write cache, not timed below): {warm:.1f} s")
    print(f"{'task':<20} {'items':>7} {'seconds':>8}  target  check")
    for name, items, sec, m in rows:
        check = f"A={m['A']:.3f} B={m['B']:.3f}" if "A" in m else f"R@1={m['R@1']:.4f} @5={m['top5']:.4f}"
        print(f"{name:<20} {items:>7} {sec:>8.2f}  <10 s   {check}  {'ok' if sec < 10 else 'SLOW'}")


if __name__ == "__main__":
    main()
