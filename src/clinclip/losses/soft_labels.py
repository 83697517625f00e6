"""Dynamic soft labels (paper Eq. 3-5, 8-9) and the clinical label vector.

Everything here runs without gradient: soft labels are targets, never something the model is pushed
through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation; an all-zero row stays all zero (no NaN), which is what an empty
    clinical label vector needs."""
    return F.normalize(x, p=2.0, dim=-1, eps=1e-12)


def clinical_vectors(labels: torch.Tensor, uncertain_as: int = 0) -> torch.Tensor:
    """CheXpert label values (1 positive, 0 negative, -1 uncertain, NaN blank) -> the 0/1 clinical
    vector of the paper: positive = 1, everything else 0; uncertain counts as ``uncertain_as``."""
    if uncertain_as not in (0, 1):
        raise ValueError(f"uncertain_as must be 0 or 1, got {uncertain_as!r}")
    labels = labels.to(torch.get_default_dtype() if not labels.is_floating_point() else labels.dtype)
    positive = labels == 1.0
    if uncertain_as == 1:
        positive = positive | (labels == -1.0)
    return positive.to(labels.dtype)


@torch.no_grad()
def thresholded_similarity(embeddings: torch.Tensor, tau: float, batch: int | None = None) -> torch.Tensor:
    """Eq. 4/5/9 before row normalisation, up to a constant factor per matrix: relu(S - tau) with
    S = E Eᵀ and the diagonal set to 1 - tau (what a unit vector scores with itself). The factor
    1/(1 - tau) of the paper is left out because the row normalisation cancels it; this saves a pass
    over the 2B x 2B matrix. ``tau`` must lie in [-1, 1).

    With ``batch`` = B and 2B rows ([originals; hard negatives]) S is symmetric: the rows of the
    originals and the negatives' own block are multiplied (3/4 of the full product) and the remaining
    block is copied transposed."""
    if not -1.0 <= tau < 1.0:
        raise ValueError(f"soft-label threshold tau must lie in [-1, 1), got {tau}")
    minus_tau = embeddings.new_tensor(-tau)
    n = embeddings.shape[0]
    if batch is None or n != 2 * batch or batch < 64:  # small: one product is as fast
        # S - tau comes out of the product itself (addmm's beta * input), then one in-place pass.
        sim = torch.addmm(minus_tau, embeddings, embeddings.T)
    else:
        top, bottom = embeddings[:batch], embeddings[batch:]
        sim = torch.empty(n, n, dtype=embeddings.dtype, device=embeddings.device)
        torch.addmm(minus_tau, top, embeddings.T, out=sim[:batch])  # rows 0..B: a contiguous block
        sim[batch:, batch:] = torch.addmm(minus_tau, bottom, bottom.T)
        sim[batch:, :batch] = sim[:batch, batch:].T
    sim.relu_()
    sim.fill_diagonal_(1.0 - tau)
    return sim


@torch.no_grad()
def thresholded_soft_labels(embeddings: torch.Tensor, tau: float) -> torch.Tensor:
    """ŷ of Eq. 4/5/9 for already L2-normalised rows (N x D) -> N x N, rows summing to 1:
    y[i, j] = (S[i, j] - tau) / (1 - tau) where S[i, j] > tau else 0, S = E Eᵀ, the diagonal kept (a
    zero vector, e.g. an empty label row, still matches itself, so no row is empty), rows normalised.
    (The loss itself works from :func:`thresholded_similarity` and per-row sums; this is the explicit
    matrix, for inspection and tests.)"""
    y = thresholded_similarity(embeddings, tau)
    return y.div_(y.sum(dim=1, keepdim=True))


@torch.no_grad()
def softmax_self_similarity(embeddings: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """SoftCLIP's softened target from intra-modal self-similarity: row-softmax of scale * E Eᵀ."""
    return torch.softmax(scale * (embeddings @ embeddings.T), dim=1)
