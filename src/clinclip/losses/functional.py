"""The paper's loss (Eq. 1-10, as settled in docs/losses.md) as plain functions.

One machinery serves every variant: a variant chooses which ordered modality pairs take part (the
candidates and anchors) and which target streams are mixed (the targets):

streams
  ``i``  identity: one-hot at the original pair (InfoNCE when it is the only stream)
  ``t``  thresholded text self-similarity      S_t = T Tᵀ   (Eq. 3-4)
  ``c``  thresholded clinical-label similarity S_c = C Cᵀ   (Eq. 3, 5)
  ``g``  thresholded graph self-similarity     S_g = G Gᵀ   (Eq. 8-9)
  ``s``  SoftCLIP: row-softmax of the anchor modality's self-similarity (baseline, not the paper's)

pairs (anchor-candidate; B studies, N = 2B with hard negatives, else B)
  ``I-T`` / ``I-G``  B image anchors, N text (graph) candidates, target rows 0..B of ŷ   (Eq. 1)
  ``T-I`` / ``G-I``  T1 (G1) anchors, B image candidates, ŷ[:B, :B] renormalised        (Eq. 2)
  ``T-G`` / ``G-T``  N anchors, N candidates, target ŷ                                   (Eq. 10)
  ``N-I``            hard-negative (negated) text anchors, B image candidates, target ŷ[B:, :B]
                     renormalised; rows without any target are left out (CON2's semantic opposition)

L_k(P) = mean over anchors of KL(ŷ_k[row] ‖ softmax(logits_P[row])) and
total = Σ_P w_P Σ_k w_k L_k(P).  Each pair's log-softmax is computed once and the targets are mixed
(the mixed target is built once per kind of target block and shared by the pairs that use it):
Σ_k w_k KL(ŷ_k ‖ p) = Σ_k w_k Σ ŷ_k log ŷ_k  -  Σ (Σ_k w_k ŷ_k) log p.  The first (entropy) part does
not depend on the model; it is kept, computed without gradient, so the value is the true KL (zero at a
perfect fit) while the gradient is that of the cross-entropy with the mixed target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from clinclip.losses.config import GRAPH_PAIRS, PAIRS, PAPER_PAIRS, STREAMS
from clinclip.losses.soft_labels import (
    l2_normalise,
    softmax_self_similarity,
    thresholded_similarity_blocks,
)

THRESHOLDED_STREAMS: tuple[str, ...] = ("t", "c", "g")


# How a pair's targets sit in the N x N stream matrices (rows = anchors, columns = candidates).
#   rows: rows 0..B, all N columns, rows already sum to 1          (I-T, I-G)
#   orig: rows 0..B, columns 0..B, renormalised per row           (T-I, G-I)
#   all:  all N rows and columns                                   (T-G, G-T)
#   neg:  rows B..N, columns 0..B, renormalised, empty rows left out (N-I)
_PAIR_KIND = {"I-T": "rows", "I-G": "rows", "T-I": "orig", "G-I": "orig", "T-G": "all", "G-T": "all", "N-I": "neg"}


@dataclass
class _PairSpec:
    name: str
    logits: torch.Tensor  # anchors x candidates, with gradient
    anchor_modality: str  # "I", "T" or "G": whose self-similarity SoftCLIP uses

    @property
    def kind(self) -> str:
        return _PAIR_KIND[self.name]


# Rows per chunk when a pass over a soft-label block goes through a small reused buffer: a fresh
# B x 2B temporary costs page faults that exceed the arithmetic on a CPU, a chunk stays in cache.
_CHUNK_ROWS = 128


def _xlogx_row_sums(top: torch.Tensor, bottom: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row Σ_j y log y (0 log 0 = 0) of the symmetric matrix given by its blocks, over all N
    columns and over the originals' first B columns (as :func:`_full_and_orig_row_sums`), computed in
    row chunks through one small buffer instead of a y log y matrix."""
    if bottom is None:
        full = torch.empty(top.shape[0], dtype=top.dtype, device=top.device)
        buffer = top.new_empty(min(_CHUNK_ROWS, top.shape[0]), top.shape[1])
        for start in range(0, top.shape[0], _CHUNK_ROWS):
            chunk = top[start : start + _CHUNK_ROWS]
            torch.sum(torch.special.xlogy(chunk, chunk, out=buffer[: chunk.shape[0]]), dim=1, out=full[start : start + chunk.shape[0]])
        return full, full
    top_orig, top_rest = top.new_empty(batch), top.new_empty(batch)
    cross_columns = top.new_zeros(batch)  # the missing block's row sums (symmetry)
    bottom_rows = top.new_empty(batch)
    buffer = top.new_empty(min(_CHUNK_ROWS, batch), top.shape[1])
    for start in range(0, batch, _CHUNK_ROWS):
        rows = slice(start, min(start + _CHUNK_ROWS, batch))
        chunk = top[rows]
        ylogy = torch.special.xlogy(chunk, chunk, out=buffer[: chunk.shape[0]])
        torch.sum(ylogy[:, :batch], dim=1, out=top_orig[rows])
        torch.sum(ylogy[:, batch:], dim=1, out=top_rest[rows])
        cross_columns += ylogy[:, batch:].sum(dim=0)
        chunk = bottom[rows]
        torch.sum(torch.special.xlogy(chunk, chunk, out=buffer[: chunk.shape[0], :batch]), dim=1, out=bottom_rows[rows])
    orig = torch.cat([top_orig, cross_columns])
    return orig + torch.cat([top_rest, bottom_rows]), orig


def _full_and_orig_row_sums(top: torch.Tensor, bottom: torch.Tensor | None, batch: int):
    """Row sums of the symmetric N x N matrix given by its blocks (see thresholded_similarity_blocks),
    over all N columns and over the originals' first B columns. The missing block's rows are the
    columns of ``top[:, B:]`` (symmetry)."""
    if bottom is None:
        full = top.sum(dim=1)
        return full, full
    cross = top[:, batch:]
    orig = torch.cat([top[:, :batch].sum(dim=1), cross.sum(dim=0)])
    return orig + torch.cat([cross.sum(dim=1), bottom.sum(dim=1)]), orig


class _StreamTargets:
    """One thresholded stream (t, c or g): the unnormalised soft labels y as the blocks of the
    symmetric N x N matrix (``top`` = B x N rows of the originals, ``bottom`` = the negatives' own
    B x B block or None; see :func:`thresholded_similarity_blocks`) and the per-row statistics that
    give every pair kind its normalised target and its Σ ŷ log ŷ without another N x N matrix.
    Built once per stream and shared by all pairs."""

    def __init__(self, embeddings: torch.Tensor, tau: float, batch: int, exact_kl: bool = True):
        self.top, self.bottom = thresholded_similarity_blocks(embeddings, tau, batch)
        self.batch, self.n = batch, embeddings.shape[0]
        # Row sums over all columns (z) and over the originals' columns (z > 0: diagonal kept).
        z, z_orig_raw = _full_and_orig_row_sums(self.top, self.bottom, batch)
        self.inv_z = z.reciprocal()
        # Block of the originals' columns, renormalised: ŷ' = ŷ[:, :B] / zb with zb = Σ_{j<B} ŷ.
        zb = z_orig_raw * self.inv_z
        self.has_block_target = zb > 0
        safe_zb = torch.where(self.has_block_target, zb, torch.ones_like(zb))
        self.block_scale = torch.where(self.has_block_target, self.inv_z / safe_zb, torch.zeros_like(zb))
        if exact_kl:
            # Σ_j y log y over all columns and the originals' ones, from 3 of the 4 blocks (symmetry).
            ylogy_full, ylogy_orig = _xlogx_row_sums(self.top, self.bottom, batch)
            log_z = z.log()
            # Normalised rows ŷ = y / z: Σ ŷ log ŷ = Σ y log y / z - log z; the renormalised block likewise.
            self.negent_rows = ylogy_full * self.inv_z - log_z
            negent_block = (ylogy_orig * self.inv_z - zb * log_z) / safe_zb - safe_zb.log()
            self.negent_block = torch.where(self.has_block_target, negent_block, torch.zeros_like(negent_block))
        else:  # cross-entropy instead of KL: the same gradient, the value shifted by the targets' entropy
            self.negent_rows = self.negent_block = torch.zeros_like(z)

    def row_stats(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-row scale that normalises the kind's block of y, per-row Σ ŷ log ŷ), one per anchor."""
        b = self.batch
        if kind == "rows":
            return self.inv_z[:b], self.negent_rows[:b]
        if kind == "all":
            return self.inv_z, self.negent_rows
        if kind == "orig":
            return self.block_scale[:b], self.negent_block[:b]
        return self.block_scale[b:], self.negent_block[b:]  # neg

    def row_cross(self, kind: str, logp: torch.Tensor) -> torch.Tensor:
        """Σ_j y[r, j] · logp[r, j] per anchor row r of the kind's (unnormalised) block of y, read from
        the stored blocks: the per-stream components need no target matrix of their own."""
        b, top, bottom = self.batch, self.top, self.bottom
        if kind == "rows" or (kind == "all" and bottom is None):
            return torch.linalg.vecdot(top, logp)
        if kind == "orig":
            return torch.linalg.vecdot(top[:, :b], logp)
        if kind == "neg":  # y[B + i, j] = top[j, B + i]
            return (top[:, b:] * logp.T).sum(dim=0)
        lower = (top[:, b:] * logp[b:, :b].T).sum(dim=0) + torch.linalg.vecdot(bottom, logp[b:, b:])
        return torch.cat([torch.linalg.vecdot(top, logp[:b]), lower])

    def rows_with_target(self, kind: str) -> torch.Tensor | int:
        if kind == "neg":
            return self.has_block_target[self.batch :].sum().clamp_min(1).to(self.top.dtype)
        return self.n if kind == "all" else self.batch


def _scaled_sum(terms, out: torch.Tensor | None = None) -> torch.Tensor:
    """Σ block * scale over (block, broadcastable scale) terms, in one buffer (``out`` if given)."""
    for i, (block, scale) in enumerate(terms):
        if i == 0:
            out = torch.mul(block, scale) if out is None else torch.mul(block, scale, out=out)
        else:
            out.addcmul_(block, scale)
    return out


def _check(name: str, x: torch.Tensor | None, batch: int | None = None) -> None:
    if x is None:
        return
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (batch x dim) tensor, got shape {tuple(x.shape)}")
    if batch is not None and x.shape[0] != batch:
        raise ValueError(f"{name} has {x.shape[0]} rows but the image batch has {batch}")


def resolve_weights(
    pairs: Mapping[str, float] | None,
    weights: Mapping[str, float],
    pair_stream_weights: Mapping[str, Mapping[str, float]] | None,
    has_graph: bool,
    has_negatives: bool,
) -> dict[str, tuple[float, dict[str, float]]]:
    """{pair: (pair weight, {stream: weight})} for every pair and stream with a nonzero weight."""
    for k in weights:
        if k not in STREAMS:
            raise ValueError(f"unknown loss stream {k!r} in weights; known: {', '.join(STREAMS)}")
    if pairs is None:
        pairs = {p: 1.0 for p in PAPER_PAIRS if has_graph or p not in GRAPH_PAIRS}
    resolved: dict[str, dict[str, float]] = {}
    for pair, pair_weight in pairs.items():
        if pair not in PAIRS:
            raise ValueError(f"unknown modality pair {pair!r}; known: {', '.join(PAIRS)}")
        if pair_weight == 0:
            continue
        if pair in GRAPH_PAIRS and not has_graph:
            raise ValueError(f"pair {pair} needs graph embeddings (g1), which were not given")
        if pair == "N-I" and not has_negatives:
            raise ValueError("pair N-I needs hard-negative text embeddings (t2), which were not given")
        stream_weights = (pair_stream_weights or {}).get(pair, weights)
        for k in stream_weights:
            if k not in STREAMS:
                raise ValueError(f"unknown loss stream {k!r} for pair {pair}")
        active = {k: float(w) for k, w in stream_weights.items() if w != 0}
        if pair_weight < 0 or any(w < 0 for w in active.values()):
            raise ValueError(f"negative loss weight for pair {pair}: {pair_weight} x {active}")
        if active:
            resolved[pair] = (float(pair_weight), active)
    return resolved


def loss_terms(
    v: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor | None,
    g1: torch.Tensor | None,
    g2: torch.Tensor | None,
    c1: torch.Tensor | None,
    c2: torch.Tensor | None,
    logit_scale: torch.Tensor | float,
    weights: Mapping[str, float],
    taus: Mapping[str, float],
    *,
    pairs: Mapping[str, float] | None = None,
    pair_stream_weights: Mapping[str, Mapping[str, float]] | None = None,
    softclip_negatives_only: bool = True,
    softclip_scale: float | None = None,
    components: bool = True,
    exact_kl: bool = True,
) -> dict[str, torch.Tensor]:
    """Total loss (Eq. 10) and, when ``components``, every L_k(P) (unweighted, detached) under ``"P/k"`` and
    each pair's weighted sum under ``"P"``.

    v, t1, t2, g1, g2: B x D raw (not yet normalised) embeddings of images, reports, hard-negative
    reports, graphs and hard-negative graphs; t2/g2/c2 None = no hard negatives (B candidates), g1/g2
    None = no graph (only I-T and T-I). c1, c2: B x 14 clinical vectors as floats (0/1; an all-zero
    row is allowed). logit_scale: the multiplier itself (already exponentiated). weights: stream ->
    weight over "i", "t", "c", "g", "s" (0 or absent = off); taus: stream -> threshold for t, c, g.
    ``pairs`` / ``pair_stream_weights``: the pairs taking part and per-pair stream weights;
    ``softclip_negatives_only`` / ``softclip_scale``: the SoftCLIP stream's options.

    ``exact_kl=False`` leaves out the targets' entropy Σ ŷ log ŷ (a constant for the model): the value
    becomes the cross-entropy, the gradient is unchanged, and the soft streams save a few passes over
    their 2B x 2B matrices.

    Inputs in half precision are upcast and the loss runs with autocast off: thresholds and soft
    labels need float32 (a bf16 similarity is off by ~1e-2, enough to move pairs across tau)."""
    compute_dtype = torch.promote_types(v.dtype, torch.float32)
    upcast = [None if x is None else x.to(compute_dtype) for x in (v, t1, t2, g1, g2, c1, c2)]
    if torch.is_tensor(logit_scale):
        logit_scale = logit_scale.to(compute_dtype)
    with torch.autocast(device_type=v.device.type, enabled=False):
        return _loss_terms(
            *upcast, logit_scale, weights, taus, pairs=pairs, pair_stream_weights=pair_stream_weights,
            softclip_negatives_only=softclip_negatives_only, softclip_scale=softclip_scale,
            components=components, exact_kl=exact_kl,
        )


def _loss_terms(
    v, t1, t2, g1, g2, c1, c2, logit_scale, weights, taus, *, pairs, pair_stream_weights,
    softclip_negatives_only, softclip_scale, components, exact_kl,
) -> dict[str, torch.Tensor]:
    batch = v.shape[0]
    _check("v", v)
    for name, x in (("t1", t1), ("t2", t2), ("g1", g1), ("g2", g2), ("c1", c1), ("c2", c2)):
        _check(name, x, batch)
    has_negatives = t2 is not None
    has_graph = g1 is not None
    if g2 is not None and not has_graph:
        raise ValueError("g2 (hard-negative graphs) given without g1")
    if has_graph and has_negatives and g2 is None:
        raise ValueError("hard negatives are on (t2 given) but their graphs g2 are missing")
    if has_graph and not has_negatives and g2 is not None:
        raise ValueError("g2 given without t2: hard negatives need their text embeddings too")
    if not has_negatives and c2 is not None:
        raise ValueError("c2 given without t2: hard negatives need their text embeddings too")

    plan = resolve_weights(pairs, weights, pair_stream_weights, has_graph, has_negatives)
    used = {k for _, ws in plan.values() for k in ws}
    for k in used & set(THRESHOLDED_STREAMS):
        if k not in taus:
            raise ValueError(f"stream {k!r} has a weight but no threshold in taus")
    if "c" in used and (c1 is None or (has_negatives and c2 is None)):
        raise ValueError("the clinical stream (c) needs label vectors c1" + (" and c2" if has_negatives else ""))
    if "g" in used and not has_graph:
        raise ValueError("the graph stream (g) needs graph embeddings g1")
    if "s" in used and has_negatives:
        raise ValueError("the SoftCLIP stream (s) is defined without hard negatives (t2 must be None)")

    # Eq. 1-2: L2-normalised embeddings, T = [T1; T2], G = [G1; G2], C = [C1; C2].
    v_n = l2_normalise(v)
    t_n = l2_normalise(torch.cat([t1, t2]) if has_negatives else t1)
    g_n = None
    if has_graph:
        g_n = l2_normalise(torch.cat([g1, g2]) if has_negatives else g1)

    # Logits: one B x N product per image pair, the text-side pairs are its transposed blocks.
    specs: dict[str, _PairSpec] = {}
    if {"I-T", "T-I", "N-I"} & plan.keys():
        logits_it = (logit_scale * v_n) @ t_n.T
        specs["I-T"] = _PairSpec("I-T", logits_it, "I")
        specs["T-I"] = _PairSpec("T-I", logits_it[:, :batch].T, "T")
        if has_negatives:
            specs["N-I"] = _PairSpec("N-I", logits_it[:, batch:].T, "T")
    if {"I-G", "G-I"} & plan.keys():
        logits_ig = (logit_scale * v_n) @ g_n.T
        specs["I-G"] = _PairSpec("I-G", logits_ig, "I")
        specs["G-I"] = _PairSpec("G-I", logits_ig[:, :batch].T, "G")
    if {"T-G", "G-T"} & plan.keys():
        logits_tg = (logit_scale * t_n) @ g_n.T
        specs["T-G"] = _PairSpec("T-G", logits_tg, "T")
        specs["G-T"] = _PairSpec("G-T", logits_tg.T, "G")

    # Eq. 3-5, 8-9: soft labels over all N x N, once per stream, without gradient.
    with torch.no_grad():
        streams: dict[str, _StreamTargets] = {}
        if "t" in used:
            streams["t"] = _StreamTargets(t_n.detach(), float(taus["t"]), batch, exact_kl)
        if "g" in used:
            streams["g"] = _StreamTargets(g_n.detach(), float(taus["g"]), batch, exact_kl)
        if "c" in used:
            c_all = torch.cat([c1, c2]) if has_negatives else c1
            c_n = l2_normalise(c_all.detach().to(v.dtype))
            streams["c"] = _StreamTargets(c_n, float(taus["c"]), batch, exact_kl)
        self_embeddings = {"I": v_n.detach(), "T": t_n.detach(), "G": g_n.detach() if g_n is not None else None}
        if softclip_scale is not None:
            s_scale = softclip_scale
        else:
            s_scale = logit_scale.detach() if torch.is_tensor(logit_scale) else logit_scale
    mixer = _TargetMixer(streams, {spec.kind for spec in specs.values() if spec.name in plan})

    out: dict[str, torch.Tensor] = {}
    total = v.new_zeros(())
    for pair, (pair_weight, stream_weights) in plan.items():
        spec = specs[pair]
        pair_loss, parts = _pair_loss(
            spec, stream_weights, mixer, self_embeddings, s_scale, softclip_negatives_only, components, exact_kl
        )
        total = total + pair_weight * pair_loss
        if components:
            out[pair] = pair_weight * pair_loss.detach()
            for k, value in parts.items():
                out[f"{pair}/{k}"] = value
    out["loss"] = total
    return out


class _TargetMixer:
    """Σ_k w_k ŷ_k for a pair kind, built once per (kind, weights) and shared: the rows kind (I-T,
    I-G) is a row block of the all kind (T-G, G-T) when both are needed. Targets are assembled
    directly from each stream's blocks, scaled per row, into one buffer."""

    def __init__(self, streams: Mapping[str, _StreamTargets], kinds: set[str]):
        self.streams = streams
        self.kinds = kinds
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def mixed(self, kind: str, weights: Mapping[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed target, constant Σ_k c_k Σ ŷ_k log ŷ_k). For kind neg the 1/n_k of each stream's
        mean is inside (rows without target differ per stream); for the other kinds every stream
        averages over the same anchors and the caller divides by their number."""
        key = (kind, tuple(sorted(weights.items())))
        if key in self._cache:
            return self._cache[key]
        if kind == "rows" and "all" in self.kinds:
            full, _ = self.mixed("all", weights)
            constant = sum(w * self.streams[k].row_stats("rows")[1].sum() for k, w in weights.items())
            self._cache[key] = (full[: next(iter(self.streams.values())).batch], constant)
        else:
            self._cache[key] = self._build(kind, weights)
        return self._cache[key]

    def _build(self, kind: str, weights: Mapping[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        streams = [self.streams[k] for k in weights]
        first = streams[0]
        b, n = first.batch, first.n
        coefs, constant = [], 0.0
        for stream, w in zip(streams, weights.values()):
            row_scale, negent = stream.row_stats(kind)
            coef = w / stream.rows_with_target(kind) if kind == "neg" else w
            coefs.append(row_scale * coef)
            constant = constant + coef * negent.sum()
        if kind in ("rows", "orig") or (kind == "all" and n == b):
            cols = slice(None) if kind != "orig" else slice(0, b)
            target = _scaled_sum((s.top[:, cols], c.unsqueeze(1)) for s, c in zip(streams, coefs))
            return target, constant
        # Rows of the hard negatives over the originals' columns: the transposed block top[:, B:]ᵀ,
        # mixed column-scaled in the layout it is stored in and transposed once.
        below = _scaled_sum((s.top[:, b:], c[b:].unsqueeze(0) if kind == "all" else c.unsqueeze(0))
                            for s, c in zip(streams, coefs))
        if kind == "neg":
            return below.T.contiguous(), constant
        target = torch.empty(n, n, dtype=first.top.dtype, device=first.top.device)
        _scaled_sum(((s.top, c[:b].unsqueeze(1)) for s, c in zip(streams, coefs)), out=target[:b])
        _scaled_sum(((s.bottom, c[b:].unsqueeze(1)) for s, c in zip(streams, coefs)), out=target[b:, b:])
        target[b:, :b] = below.T
        return target, constant


def _pair_loss(
    spec: _PairSpec,
    stream_weights: Mapping[str, float],
    mixer: _TargetMixer,
    self_embeddings: Mapping[str, torch.Tensor | None],
    s_scale: torch.Tensor | float,
    softclip_negatives_only: bool,
    components: bool,
    exact_kl: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = spec.logits
    n_anchors = logits.shape[0]
    logp = torch.log_softmax(logits, dim=1)
    offset = 0 if spec.kind != "neg" else None  # column of the one-hot target: row r -> r (no original in N-I)
    parts: dict[str, torch.Tensor] = {}
    loss = logits.new_zeros(())

    thresholded = {k: w for k, w in stream_weights.items() if k in THRESHOLDED_STREAMS}
    plain_soft = {k: w for k, w in stream_weights.items() if k == "s" and not softclip_negatives_only}
    if thresholded:
        target, constant = mixer.mixed(spec.kind, thresholded)
        cross = torch.dot(target.reshape(-1), logp.reshape(-1))
        if spec.kind == "neg":
            loss = loss + constant - cross
        else:
            loss = loss + (constant - cross) / n_anchors
        if components:
            with torch.no_grad():
                for k in thresholded:
                    stream = mixer.streams[k]
                    row_scale, negent = stream.row_stats(spec.kind)
                    cross_k = torch.dot(row_scale, stream.row_cross(spec.kind, logp))
                    parts[k] = (negent.sum() - cross_k) / stream.rows_with_target(spec.kind)
    for k, w in stream_weights.items():
        if k == "i":
            if offset is None:  # no original pair in this block: the one-hot stream is empty
                if components:
                    parts[k] = logits.new_zeros(())
                continue
            # KL(one-hot ‖ p) = -log p[row, own column]; no dense target needed.
            diag = torch.diagonal(logp, offset=offset)
            loss = loss - w * diag.mean()
            if components:
                parts[k] = -diag.detach().mean()
        elif k == "s" and softclip_negatives_only:
            term = _softclip_negatives_kl(spec, logits, self_embeddings, s_scale, exact_kl)
            loss = loss + w * term
            if components:
                parts[k] = term.detach()
    if plain_soft:
        with torch.no_grad():
            target = softmax_self_similarity(self_embeddings[spec.anchor_modality], s_scale)
            target_logp = target.clamp_min(torch.finfo(target.dtype).tiny).log()
            neg_entropy = torch.dot(target.reshape(-1), target_logp.reshape(-1)) if exact_kl else 0.0
        kl = (neg_entropy - torch.dot(target.reshape(-1), logp.reshape(-1))) / n_anchors
        loss = loss + plain_soft["s"] * kl
        if components:
            parts["s"] = kl.detach()
    return loss, parts


def _softclip_negatives_kl(
    spec: _PairSpec,
    logits: torch.Tensor,
    self_embeddings: Mapping[str, torch.Tensor | None],
    s_scale: torch.Tensor | float,
    exact_kl: bool = True,
) -> torch.Tensor:
    """SoftCLIP's negatives-only KL: target and prediction both renormalised over the negatives
    (the positive is dropped from both), averaged over anchors."""
    n_anchors, n_candidates = logits.shape
    if spec.kind == "neg" or n_anchors != n_candidates:
        raise ValueError(f"the SoftCLIP stream needs a square, index-aligned pair; {spec.name} is not")
    if n_candidates < 2:  # a single candidate has no negatives
        return logits.new_zeros(())
    eye = torch.eye(n_candidates, dtype=torch.bool, device=logits.device)
    with torch.no_grad():
        target = softmax_self_similarity(self_embeddings[spec.anchor_modality], s_scale)
        target = target.masked_fill(eye, 0.0)
        target = target / target.sum(dim=1, keepdim=True).clamp_min(torch.finfo(target.dtype).tiny)
        neg_entropy = torch.special.xlogy(target, target).sum() if exact_kl else 0.0
    logq = torch.log_softmax(logits.masked_fill(eye, float("-inf")), dim=1).masked_fill(eye, 0.0)
    return (neg_entropy - (target * logq).sum()) / n_anchors


def total_loss(*inputs, **options) -> torch.Tensor:
    """Eq. 10: Σ over ordered pairs P and streams k of w_k · mean_anchors KL(ŷ_k[row] ‖ softmax(logits)).
    ``loss_terms(*inputs, **options)["loss"]`` without the components (arguments there)."""
    return loss_terms(*inputs, components=False, **options)["loss"]
