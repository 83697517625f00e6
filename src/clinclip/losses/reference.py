"""The definition of the loss (paper Eq. 1-10 and SoftCLIP), written densely as the equations read: every
similarity matrix in full, float64, no chunking, no shared code with ``functional.py``. ``functional.py`` is
the fast path (block-symmetric, chunked, mixed targets) and is tested against this module.

B studies; V images, T = [T1; T2] reports and their hard negatives (N = 2B rows with hard negatives, else B),
G = [G1; G2] graphs, C = [C1; C2] clinical vectors; every row L2-normalised (a zero row stays zero).

  ŷ_i = I                                                          (identity: InfoNCE)
  ŷ_k = rownorm(Y_k),  Y_k[a,b] = max(0, (S_k[a,b] - τ_k) / (1 - τ_k)),  Y_k[a,a] = 1,  S_k = E_k E_kᵀ
        for k = t, c, g with E_t = T, E_c = C, E_g = G                          (Eq. 3-5, 8-9)
  L_k(P) = mean over the anchors a of P of KL(target_k[a] ‖ softmax(s · anchors[a] · candidatesᵀ))
  total = Σ_P w_P Σ_k w_k L_k(P)                                                 (Eq. 10)

with, per pair P (anchors, candidates, target):
  I-T, I-G   V, T (G), ŷ_k[:B]                                                   (Eq. 1)
  T-I, G-I   T1 (G1), V, rownorm(ŷ_k[:B, :B])                                    (Eq. 2)
  T-G, G-T   T (G), G (T), ŷ_k
  N-I        T2, V, rownorm(ŷ_k[B:, :B]) over the rows that have any target
SoftCLIP's stream ``s`` (pairs I-T and T-I without hard negatives): the target of anchor a is the softmax of
its own modality's self-similarity s' · A Aᵀ (s' = ``softclip_scale``, default the logit scale s); with ``negatives_only`` the positive is dropped from target and
prediction and both are renormalised over the negatives.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

DEFAULT_PAIRS = ("I-T", "T-I")
GRAPH_PAIRS = ("I-G", "G-I", "T-G", "G-T")


def _rows(*parts: torch.Tensor | None) -> torch.Tensor | None:
    kept = [p for p in parts if p is not None]
    return F.normalize(torch.cat(kept).to(torch.float64), dim=1) if kept else None


def _rownorm(y: torch.Tensor) -> torch.Tensor:
    return y / y.sum(dim=1, keepdim=True)


def thresholded_targets(e: torch.Tensor, tau: float) -> torch.Tensor:
    """ŷ_k from the rows of E_k (Eq. 4/5/9), the diagonal always kept."""
    s = e @ e.T
    y = torch.where(s > tau, (s - tau) / (1 - tau), torch.zeros_like(s))
    return _rownorm(y.fill_diagonal_(1.0))


def mean_kl(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(target ‖ softmax(logits)), with 0 log 0 = 0."""
    kl = torch.special.xlogy(target, target) - target * torch.log_softmax(logits, dim=1)
    return kl.sum(dim=1).mean()


def _softclip(anchor: torch.Tensor, candidate: torch.Tensor, scale: float, self_scale: float,
              negatives_only: bool) -> torch.Tensor:
    target, logits = torch.softmax(self_scale * anchor @ anchor.T, dim=1), scale * anchor @ candidate.T
    if not negatives_only:
        return mean_kl(target, logits)
    keep = ~torch.eye(len(anchor), dtype=torch.bool)
    n = len(anchor)
    return mean_kl(_rownorm(target[keep].view(n, n - 1)), logits[keep].view(n, n - 1))


def reference_loss(v, t1, t2, g1, g2, c1, c2, scale: float, weights: Mapping[str, float],
                   taus: Mapping[str, float], pairs: Mapping[str, float] | None = None,
                   pair_stream_weights: Mapping[str, Mapping[str, float]] | None = None,
                   softclip_negatives_only: bool = True, softclip_scale: float | None = None) -> torch.Tensor:
    """Eq. 10 over the pairs (default: I-T, T-I and, with graphs, the four graph pairs) and streams."""
    b, scale = v.shape[0], float(scale)
    V, T, G, C = _rows(v), _rows(t1, t2), _rows(g1, g2), _rows(c1, c2)
    modality = {"I": V, "T": T, "G": G}
    if pairs is None:
        pairs = {p: 1.0 for p in DEFAULT_PAIRS + (GRAPH_PAIRS if G is not None else ())}
    total = torch.zeros((), dtype=torch.float64)
    for pair, pair_weight in pairs.items():
        for k, w in (pair_stream_weights or {}).get(pair, weights).items():
            if w == 0:
                continue
            anchor, candidate = modality["T" if pair[0] == "N" else pair[0]], modality[pair[2]]
            if k == "s":
                self_scale = scale if softclip_scale is None else float(softclip_scale)
                loss = _softclip(anchor[:b], candidate[:b], scale, self_scale, softclip_negatives_only)
            else:
                y = torch.eye(len(T), dtype=torch.float64) if k == "i" else \
                    thresholded_targets({"t": T, "c": C, "g": G}[k], taus[k])
                if pair in ("I-T", "I-G"):
                    target, logits = y[:b], V @ candidate.T
                elif pair in ("T-I", "G-I"):
                    target, logits = _rownorm(y[:b, :b]), anchor[:b] @ V.T
                elif pair in ("T-G", "G-T"):
                    target, logits = y, anchor @ candidate.T
                else:  # N-I: the negated texts as anchors, over the B images
                    target, logits = y[b:, :b], T[b:] @ V.T
                    has_target = target.sum(dim=1) > 0
                    target, logits = _rownorm(target[has_target]), logits[has_target]
                    if not len(target):
                        continue
                loss = mean_kl(target, scale * logits)
            total = total + pair_weight * w * loss
    return total
