"""The fast functional loss against its definition, ``clinclip.losses.reference`` (dense, float64, no shared
code with the implementation), and against hand-written special cases (InfoNCE, SoftCLIP in loops)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clinclip.losses import loss_terms, total_loss
from clinclip.losses.reference import reference_loss

# ---------------------------------------------------------------- loop helpers for the SoftCLIP check


def _unit(row):
    n = math.sqrt(sum(x * x for x in row))
    return [x / n for x in row] if n > 0 else [0.0 for _ in row]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _rows(x):
    return [[float(e) for e in r] for r in x.detach().to(torch.float64)]


def ref_kl(target, logits):
    """KL(target ‖ softmax(logits)) with 0 log 0 = 0."""
    m = max(logits)
    log_z = m + math.log(sum(math.exp(x - m) for x in logits))
    return sum(t * (math.log(t) - (x - log_z)) for t, x in zip(target, logits) if t > 0)


# ---------------------------------------------------------------- inputs


def make_batch(B, D=6, seed=0, negatives=True, graph=True, dtype=torch.float64, zero_label_rows=(), dup=()):
    g = torch.Generator().manual_seed(seed)
    x = {name: torch.randn(B, D, generator=g, dtype=dtype) for name in ("v", "t1", "t2", "g1", "g2")}
    c1 = (torch.rand(B, 14, generator=g) < 0.3).to(dtype)
    c2 = (torch.rand(B, 14, generator=g) < 0.3).to(dtype)
    for r in zero_label_rows:
        c1[r] = 0
    for a, b in dup:  # duplicate reports: identical text, graph, labels (and a near-identical image)
        for name in ("t1", "g1"):
            x[name][b] = x[name][a]
        c1[b] = c1[a]
    x["c1"], x["c2"] = c1, c2
    if not negatives:
        x["t2"] = x["g2"] = x["c2"] = None
    if not graph:
        x["g1"] = x["g2"] = None
    return x


def call(fn, x, scale, weights, taus, **kw):
    return fn(x["v"], x["t1"], x["t2"], x["g1"], x["g2"], x["c1"], x["c2"], scale, weights, taus, **kw)


TAUS = {"t": 0.8, "c": 0.5, "g": 0.8}

# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("B", [1, 2, 5, 8])
@pytest.mark.parametrize(
    "negatives,graph,weights,taus",
    [
        (True, True, {"t": 1.0, "c": 1.0, "g": 1.0}, TAUS),
        (True, True, {"t": 0.5, "c": 2.0, "g": 0.25, "i": 1.0}, {"t": 0.1, "c": 0.3, "g": -0.2}),
        (False, True, {"t": 1.0, "c": 0.7, "g": 1.3}, {"t": 0.0, "c": 0.5, "g": 0.4}),
        (True, False, {"t": 1.0, "c": 1.0}, {"t": 0.2, "c": 0.0}),
        (False, False, {"i": 1.0}, TAUS),
    ],
)
def test_matches_reference(B, negatives, graph, weights, taus):
    x = make_batch(B, seed=B, negatives=negatives, graph=graph, zero_label_rows=[0])
    got = call(total_loss, x, 3.5, weights, taus)
    want = reference_loss(x["v"], x["t1"], x["t2"], x["g1"], x["g2"], x["c1"], x["c2"], 3.5, weights, taus).item()
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_low_thresholds_spread_targets_and_change_the_loss():
    """A threshold that lets many pairs through must give a different value than one that keeps only
    the diagonal (guards against thresholds being ignored)."""
    x = make_batch(6, seed=3)
    low = call(total_loss, x, 2.0, {"t": 1.0}, {"t": -1.0}).item()
    high = call(total_loss, x, 2.0, {"t": 1.0}, {"t": 0.999}).item()
    identity = call(total_loss, x, 2.0, {"i": 1.0}, {}).item()
    assert high == pytest.approx(identity, rel=1e-12)  # only the diagonal survives -> one-hot
    assert abs(low - high) > 1e-3
    assert low == pytest.approx(reference_loss(*[x[k] for k in ("v", "t1", "t2", "g1", "g2", "c1", "c2")],
                                               2.0, {"t": 1.0}, {"t": -1.0}).item(), rel=1e-10)


def test_all_zero_label_rows_match_only_themselves():
    x = make_batch(5, seed=7, zero_label_rows=[1, 2], negatives=False, graph=False)
    out = call(loss_terms, x, 4.0, {"c": 1.0}, {"c": 0.5})
    assert torch.isfinite(out["loss"])
    want = reference_loss(x["v"], x["t1"], None, None, None, x["c1"], None, 4.0, {"c": 1.0}, {"c": 0.5}).item()
    assert out["loss"].item() == pytest.approx(want, rel=1e-10)
    # A zero row's target is one-hot on itself, so its I-T KL equals its cross-entropy at the diagonal.
    from clinclip.losses.soft_labels import l2_normalise, thresholded_soft_labels

    y = thresholded_soft_labels(l2_normalise(x["c1"]), 0.5)
    assert torch.equal(y[1], torch.eye(5, dtype=y.dtype)[1])
    assert torch.equal(y[2], torch.eye(5, dtype=y.dtype)[2])


def test_duplicate_reports_share_target_mass():
    x = make_batch(6, seed=11, dup=[(0, 3)], negatives=True, graph=True)
    from clinclip.losses.soft_labels import l2_normalise, thresholded_soft_labels

    y = thresholded_soft_labels(l2_normalise(torch.cat([x["t1"], x["t2"]])), 0.8)
    assert y[0, 0].item() == pytest.approx(y[0, 3].item()) and y[0, 3] > 0.3
    weights = {"t": 1.0, "c": 1.0, "g": 1.0}
    got = call(total_loss, x, 5.0, weights, TAUS).item()
    want = reference_loss(*[x[k] for k in ("v", "t1", "t2", "g1", "g2", "c1", "c2")], 5.0, weights, TAUS).item()
    assert got == pytest.approx(want, rel=1e-10)
    # With identity targets the duplicate is (wrongly) a negative: the soft loss must differ.
    assert abs(got - call(total_loss, x, 5.0, {"i": 3.0}, TAUS).item()) > 1e-3


def test_weight_zero_turns_stream_off():
    x = make_batch(5, seed=5)
    with_zero = call(total_loss, x, 3.0, {"t": 1.0, "c": 0.0, "g": 0.0}, TAUS)
    only_t = call(total_loss, x, 3.0, {"t": 1.0}, TAUS)
    assert with_zero.item() == pytest.approx(only_t.item(), rel=1e-14)
    # c off: the label vectors may then be absent altogether
    x_nolabels = dict(x, c1=None, c2=None)
    assert call(total_loss, x_nolabels, 3.0, {"t": 1.0, "c": 0.0}, TAUS).item() == pytest.approx(only_t.item())
    with pytest.raises(ValueError, match="clinical stream"):
        call(total_loss, x_nolabels, 3.0, {"t": 1.0, "c": 1.0}, TAUS)


def test_mixed_targets_equal_term_by_term_sum():
    """The implementation mixes targets under one log-softmax; the sum of separate per-stream losses
    (value and gradient) must be the same."""
    x = make_batch(6, seed=21, zero_label_rows=[2], dup=[(1, 4)])
    weights = {"t": 0.7, "c": 1.3, "g": 0.4, "i": 0.2}
    leaves = {k: x[k].clone().requires_grad_(True) for k in ("v", "t1", "t2", "g1", "g2")}
    xa = dict(x, **leaves)
    scale = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    out = call(loss_terms, xa, scale, weights, TAUS)
    out["loss"].backward()
    grads_mixed = {k: t.grad.clone() for k, t in leaves.items()}
    grad_scale_mixed = scale.grad.clone()

    # components: loss == Σ_P Σ_k w_k L_k(P)
    pairs = ["I-T", "T-I", "I-G", "G-I", "T-G", "G-T"]
    assert out["loss"].item() == pytest.approx(
        sum(weights[k] * out[f"{p}/{k}"].item() for p in pairs for k in weights), rel=1e-12
    )
    for p in pairs:
        for k in weights:
            assert out[f"{p}/{k}"].item() >= -1e-12  # each is a KL divergence

    for t in list(leaves.values()) + [scale]:
        t.grad = None
    separate = sum(w * call(total_loss, xa, scale, {k: 1.0}, TAUS) for k, w in weights.items())
    separate.backward()
    assert out["loss"].item() == pytest.approx(separate.item(), rel=1e-12)
    for k, t in leaves.items():
        torch.testing.assert_close(t.grad, grads_mixed[k], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scale.grad, grad_scale_mixed, rtol=1e-10, atol=1e-12)


@pytest.fixture
def frozen_targets(monkeypatch):
    """Soft labels are computed without gradient (SPEC 4), so the loss is differentiated with the
    targets held fixed. For gradcheck's finite differences to see that same function, each target is
    frozen at its first value: thresholded streams keyed by their tau (distinct per stream in these
    tests), SoftCLIP's self-similarity by call order (I-T then T-I in every evaluation)."""
    import clinclip.losses.functional as functional

    thresholded, softmax_self = functional.thresholded_similarity_blocks, functional.softmax_self_similarity
    memo: dict = {}
    calls = {"s": 0}

    def frozen_thresholded(embeddings, tau, *args):
        if tau not in memo:
            memo[tau] = thresholded(embeddings, tau, *args)
        return tuple(None if block is None else block.clone() for block in memo[tau])

    def frozen_softmax(embeddings, scale):
        key = ("s", calls["s"] % 2)
        calls["s"] += 1
        if key not in memo:
            memo[key] = softmax_self(embeddings, scale)
        return memo[key].clone()

    monkeypatch.setattr(functional, "thresholded_similarity_blocks", frozen_thresholded)
    monkeypatch.setattr(functional, "softmax_self_similarity", frozen_softmax)


@pytest.mark.parametrize("B,D,fast", [(2, 2, False), (4, 3, True)])
def test_gradcheck_full_structure(frozen_targets, B, D, fast):
    # Every Jacobian entry on a tiny batch; random projections of the Jacobian on a larger one.
    x = make_batch(B, D=D, seed=2, zero_label_rows=[1])
    leaves = [x[k].clone().requires_grad_(True) for k in ("v", "t1", "t2", "g1", "g2")]
    scale = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)

    def f(v, t1, t2, g1, g2, s):
        return total_loss(v, t1, t2, g1, g2, x["c1"], x["c2"], s, {"t": 1.0, "c": 0.5, "g": 1.0, "i": 0.3},
                          {"t": 0.2, "c": 0.3, "g": 0.1})

    assert torch.autograd.gradcheck(f, (*leaves, scale), eps=1e-6, atol=1e-7, fast_mode=fast)


def test_gradcheck_softclip_and_negated_anchors(frozen_targets):
    x = make_batch(3, D=3, seed=9, graph=False, negatives=False)
    leaves = [x[k].clone().requires_grad_(True) for k in ("v", "t1")]
    assert torch.autograd.gradcheck(
        lambda v, t1: total_loss(v, t1, None, None, None, None, None, 3.0, {"i": 1.0, "s": 1.0}, {}),
        tuple(leaves),
    )
    xn = make_batch(3, D=2, seed=10, graph=False)
    xn["c2"] = xn["c1"][[1, 0, 0]].clone()  # negations consistent with other images (row 2: with image 0)
    leaves = [xn[k].clone().requires_grad_(True) for k in ("v", "t1", "t2")]
    assert torch.autograd.gradcheck(
        lambda v, t1, t2: total_loss(v, t1, t2, None, None, xn["c1"], xn["c2"], 3.0, {"i": 1.0}, {"c": 0.9},
                                     pairs={"I-T": 1, "T-I": 1, "N-I": 1}, pair_stream_weights={"N-I": {"c": 1.0}}),
        tuple(leaves),
    )


@pytest.mark.parametrize("B", [1, 2, 7])
def test_identity_targets_equal_clip_infonce(B):
    x = make_batch(B, seed=30 + B, negatives=False, graph=False)
    v = x["v"].clone().requires_grad_(True)
    t = x["t1"].clone().requires_grad_(True)
    ours = total_loss(v, t, None, None, None, None, None, 1 / 0.07, {"i": 1.0}, {})
    ours.backward()
    g_ours = v.grad.clone(), t.grad.clone()
    v.grad = t.grad = None
    logits = (1 / 0.07) * F.normalize(v, dim=1) @ F.normalize(t, dim=1).T
    labels = torch.arange(B)
    direct = F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)  # Eq. 10 sums directions
    direct.backward()
    assert ours.item() == pytest.approx(direct.item(), rel=1e-12)
    torch.testing.assert_close(v.grad, g_ours[0])
    torch.testing.assert_close(t.grad, g_ours[1])


def test_identity_with_hard_negatives_is_infonce_over_2b_candidates():
    B = 4
    x = make_batch(B, seed=40, graph=False)
    v, t1, t2 = (F.normalize(x[k], dim=1) for k in ("v", "t1", "t2"))
    s = 10.0
    labels = torch.arange(B)
    direct = F.cross_entropy(s * v @ torch.cat([t1, t2]).T, labels) + F.cross_entropy(s * t1 @ v.T, labels)
    ours = total_loss(x["v"], x["t1"], x["t2"], None, None, None, None, s, {"i": 1.0}, {})
    assert ours.item() == pytest.approx(direct.item(), rel=1e-12)


def test_softclip_matches_loop_reference():
    B, s = 5, 6.0
    x = make_batch(B, seed=50, negatives=False, graph=False)
    V = [_unit(r) for r in _rows(x["v"])]
    T = [_unit(r) for r in _rows(x["t1"])]

    def neg_kl(anchor_self, anch, cand):
        total = 0.0
        for i in range(B):
            # target: softmax over the anchor modality's self-similarity, positive removed, renormalised
            e = [math.exp(s * _dot(anchor_self[i], anchor_self[j])) for j in range(B)]
            tgt = [e[j] if j != i else 0.0 for j in range(B)]
            tgt = [t / sum(tgt) for t in tgt]
            logits = [s * _dot(anch[i], cand[j]) for j in range(B) if j != i]
            total += ref_kl([t for j, t in enumerate(tgt) if j != i], logits)
        return total / B

    infonce = reference_loss(x["v"], x["t1"], None, None, None, None, None, s, {"i": 1.0}, {}).item()
    want = infonce + neg_kl(V, V, T) + neg_kl(T, T, V)
    got = total_loss(x["v"], x["t1"], None, None, None, None, None, s, {"i": 1.0, "s": 1.0}, {})
    assert got.item() == pytest.approx(want, rel=1e-10)
    defined = reference_loss(x["v"], x["t1"], None, None, None, None, None, s, {"i": 1.0, "s": 1.0}, {})
    assert defined.item() == pytest.approx(want, rel=1e-10)
    for negatives_only in (True, False):
        kw = dict(softclip_negatives_only=negatives_only, softclip_scale=2.0)
        got = total_loss(x["v"], x["t1"], None, None, None, None, None, s, {"s": 1.0}, {}, **kw)
        want = reference_loss(x["v"], x["t1"], None, None, None, None, None, s, {"s": 1.0}, {}, **kw).item()
        assert got.item() == pytest.approx(want, rel=1e-10)


def test_negated_anchor_pair_leaves_out_rows_without_target():
    B = 4
    x = make_batch(B, seed=60, graph=False)
    x["c1"] = torch.eye(14, dtype=torch.float64)[:B]
    x["c2"] = torch.zeros(B, 14, dtype=torch.float64)
    x["c2"][0] = x["c1"][2]  # negation 0 is consistent with image 2 only; the others with none
    kw = dict(pairs={"N-I": 1.0}, pair_stream_weights={"N-I": {"c": 1.0}})
    got = call(loss_terms, x, 5.0, {}, {"c": 0.9}, **kw)
    want = reference_loss(*[x[k] for k in ("v", "t1", "t2", "g1", "g2", "c1", "c2")], 5.0, {}, {"c": 0.9}, **kw).item()
    logits0 = 5.0 * F.normalize(x["t2"][0], dim=0) @ F.normalize(x["v"], dim=1).T
    assert got["loss"].item() == pytest.approx(want, rel=1e-10)
    assert got["loss"].item() == pytest.approx(-torch.log_softmax(logits0, 0)[2].item(), rel=1e-10)


def test_float32_and_bad_inputs():
    x = make_batch(4, seed=1, dtype=torch.float32)
    out = call(total_loss, x, 2.0, {"t": 1.0, "c": 1.0, "g": 1.0}, TAUS)
    assert out.dtype == torch.float32
    want = reference_loss(*[x[k] for k in ("v", "t1", "t2", "g1", "g2", "c1", "c2")], 2.0,
                          {"t": 1.0, "c": 1.0, "g": 1.0}, TAUS).item()
    assert out.item() == pytest.approx(want, rel=1e-4)
    with pytest.raises(ValueError, match="unknown loss stream"):
        call(total_loss, x, 2.0, {"x": 1.0}, TAUS)
    with pytest.raises(ValueError, match="rows"):
        total_loss(x["v"], x["t1"][:3], None, None, None, None, None, 2.0, {"i": 1.0}, {})
    with pytest.raises(ValueError, match="g2"):
        total_loss(x["v"], x["t1"], x["t2"], x["g1"], None, None, None, 2.0, {"i": 1.0}, {})
    with pytest.raises(ValueError, match="tau"):
        call(total_loss, x, 2.0, {"t": 1.0}, {"t": 1.0})


def test_cross_entropy_mode_shifts_value_not_gradient():
    x = make_batch(5, seed=70, zero_label_rows=[3])
    weights = {"t": 1.0, "c": 0.5, "g": 2.0, "i": 0.1}
    leaves = {k: x[k].clone().requires_grad_(True) for k in ("v", "t1", "t2", "g1", "g2")}
    xa = dict(x, **leaves)
    kl = call(total_loss, xa, 3.0, weights, {"t": 0.1, "c": 0.2, "g": 0.0})
    kl.backward()
    grads = {k: t.grad.clone() for k, t in leaves.items()}
    for t in leaves.values():
        t.grad = None
    ce = call(total_loss, xa, 3.0, weights, {"t": 0.1, "c": 0.2, "g": 0.0}, exact_kl=False)
    ce.backward()
    assert ce.item() > kl.item() + 1e-3  # cross-entropy = KL + entropy of the (non one-hot) targets
    for k, t in leaves.items():
        torch.testing.assert_close(t.grad, grads[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("B,tau", [(64, 0.3), (97, -0.5)])
def test_symmetric_block_similarity_equals_full_product(B, tau):
    """Large batches with hard negatives build S from 3 of its 4 blocks; it must equal E Eᵀ."""
    from clinclip.losses.soft_labels import l2_normalise, thresholded_similarity

    e = l2_normalise(torch.randn(2 * B, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(B)))
    e[B + 3] = e[2]  # a hard negative identical to an original
    want = (e @ e.T - tau).clamp_min(0).fill_diagonal_(1 - tau)
    torch.testing.assert_close(thresholded_similarity(e, tau, B), want, rtol=0, atol=1e-15)
    torch.testing.assert_close(thresholded_similarity(e, tau), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("negatives", [True, False])
def test_entropy_in_row_chunks_matches_reference(monkeypatch, negatives):
    """The targets' entropy runs in row chunks through a small buffer; chunks that do not divide B (and
    the column sums of the hard-negative block accumulated over chunks) must give the same KL."""
    import clinclip.losses.functional as functional

    monkeypatch.setattr(functional, "_CHUNK_ROWS", 3)
    weights, taus = {"t": 1.0, "c": 0.5, "g": 2.0}, {"t": 0.1, "c": 0.3, "g": -0.3}
    x = make_batch(8, seed=11, negatives=negatives, zero_label_rows=[2], dup=[(1, 5)])
    got = call(total_loss, x, 2.5, weights, taus)
    want = reference_loss(x["v"], x["t1"], x["t2"], x["g1"], x["g2"], x["c1"], x["c2"], 2.5, weights, taus).item()
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-10)
