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
def thresholded_similarity_blocks(
    embeddings: torch.Tensor, tau: float, batch: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The thresholded similarity of :func:`thresholded_similarity` as the blocks the loss needs,
    without ever forming the full N x N matrix.

    ``embeddings`` has N = B rows (originals) or N = 2B rows ([originals; hard negatives]). S = E Eᵀ
    is symmetric, so with 2B rows only 3 of its 4 B x B blocks are multiplied: ``top`` = rows of the
    originals (B x N) and ``bottom`` = the negatives' own block (B x B; None when N = B). The missing
    block is ``top[:, B:]ᵀ``. Each entry is relu(S - tau) with the diagonal set to 1 - tau (what a
    unit vector scores with itself); the paper's factor 1/(1 - tau) is left out because the row
    normalisation cancels it. ``tau`` must lie in [-1, 1)."""
    if not -1.0 <= tau < 1.0:
        raise ValueError(f"soft-label threshold tau must lie in [-1, 1), got {tau}")
    n = embeddings.shape[0]
    if n not in (batch, 2 * batch):
        raise ValueError(f"{n} embedding rows for a batch of {batch}: expected B or 2B rows")
    minus_tau = embeddings.new_tensor(-tau)
    originals = embeddings[:batch]
    # S - tau comes out of the product itself (addmm's beta * input), then one in-place pass.
    top = torch.addmm(minus_tau, originals, embeddings.T).relu_()
    top.diagonal().fill_(1.0 - tau)  # the first B columns are the originals themselves
    if n == batch:
        return top, None
    negatives = embeddings[batch:]
    bottom = torch.addmm(minus_tau, negatives, negatives.T).relu_()
    bottom.diagonal().fill_(1.0 - tau)
    return top, bottom


@torch.no_grad()
def thresholded_similarity(embeddings: torch.Tensor, tau: float, batch: int | None = None) -> torch.Tensor:
    """Eq. 4/5/9 before row normalisation, up to a constant factor per matrix, as one N x N matrix:
    relu(S - tau) with S = E Eᵀ and the diagonal set to 1 - tau (see
    :func:`thresholded_similarity_blocks`, which the loss uses). With ``batch`` = B and 2B rows it is
    assembled from the 3 multiplied blocks; otherwise one product."""
    n = embeddings.shape[0]
    if batch is None or n != 2 * batch:
        top, _ = thresholded_similarity_blocks(embeddings, tau, n)
        return top
    top, bottom = thresholded_similarity_blocks(embeddings, tau, batch)
    sim = torch.empty(n, n, dtype=embeddings.dtype, device=embeddings.device)
    sim[:batch] = top
    sim[batch:, batch:] = bottom
    sim[batch:, :batch] = top[:, batch:].T
    return sim


@torch.no_grad()
def thresholded_soft_labels(embeddings: torch.Tensor, tau: float) -> torch.Tensor:
    """ŷ of Eq. 4/5/9 for already L2-normalised rows (N x D) -> N x N, rows summing to 1:
    y[i, j] = (S[i, j] - tau) / (1 - tau) where S[i, j] > tau else 0, S = E Eᵀ, the diagonal kept (a
    zero vector, e.g. an empty label row, still matches itself, so no row is empty), rows normalised.
    (The loss itself works from :func:`thresholded_similarity_blocks` and per-row sums; this is the
    explicit matrix, for inspection and tests.)"""
    y = thresholded_similarity(embeddings, tau)
    return y.div_(y.sum(dim=1, keepdim=True))


@torch.no_grad()
def softmax_self_similarity(embeddings: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """SoftCLIP's softened target from intra-modal self-similarity: row-softmax of scale * E Eᵀ."""
    return torch.softmax(scale * (embeddings @ embeddings.T), dim=1)
