"""Independent NumPy references of the loss formulas in docs/objectives.md, checked against the torch losses.

Every reference below is written from the formulas as documented (not from
``stence_bench_plugins.objectives.losses``): two independent implementations of the same mathematics must agree
to 1e-5 on random inputs. The torch functions get float64 inputs, so float noise stays far below the tolerance
while a formula error (a wrong normaliser, a missing term, a transposed matrix) fails loudly.

Covered: CLIP (two-way InfoNCE), SigLIP (pairwise sigmoid, with soft Jaccard targets), NT-Xent / SupCon
(segment and patient positives), triplet loss with its label and signal-distance miners (Euclidean and
multivariate DTW), and the CLEF risk-weighted contrastive loss with its alignment term. Each loss is also
checked to give finite gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stence_bench_plugins.objectives import losses

RTOL = 1e-5
ATOL = 1e-5
TEMPERATURES = (0.07, 0.1, 0.3, 1.0)


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), stable: -log σ(y) = softplus(-y)."""
    return np.logaddexp(0.0, x)


def _t(x: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=requires_grad)


def _scalar(value) -> float:
    assert isinstance(value, torch.Tensor), f"expected a tensor, got {type(value)}"
    assert value.dim() == 0, f"expected a scalar tensor, got shape {tuple(value.shape)}"
    return float(value.detach())


def _close(actual: float, expected: float) -> None:
    assert np.isclose(actual, expected, rtol=RTOL, atol=ATOL), f"torch {actual!r} != reference {expected!r}"


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _triplet_set(mined) -> set[tuple[int, int, int]]:
    """A miner's output as a set of (a, p, n): accepts (a, p, n) sequences or a [K, 3] array/tensor."""
    if isinstance(mined, (tuple, list)) and len(mined) == 3:
        a, p, n = (_to_numpy(v).astype(np.int64).ravel() for v in mined)
        assert len(a) == len(p) == len(n)
    else:
        arr = _to_numpy(mined).astype(np.int64).reshape(-1, 3)
        a, p, n = arr[:, 0], arr[:, 1], arr[:, 2]
    triples = list(zip(a.tolist(), p.tolist(), n.tolist()))
    assert len(triples) == len(set(triples)), "a miner returned duplicate triplets"
    return set(triples)


def _triplet_tensors(triples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    triples = sorted(triples)
    if not triples:
        e = torch.zeros(0, dtype=torch.int64)
        return e, e.clone(), e.clone()
    arr = torch.tensor(triples, dtype=torch.int64)
    return arr[:, 0].contiguous(), arr[:, 1].contiguous(), arr[:, 2].contiguous()


def _assert_finite_grads(*tensors: torch.Tensor) -> None:
    for t in tensors:
        assert t.grad is not None, "no gradient reached an input"
        assert torch.isfinite(t.grad).all(), "non-finite gradient"
    assert any(float(t.grad.abs().sum()) > 0 for t in tensors), "all gradients are zero"


CASES = [(seed, n, d) for seed, (n, d) in enumerate([(2, 3), (3, 8), (5, 4), (8, 16), (11, 32), (16, 7)])]


# --------------------------------------------------------------------------------------------------------------
# 1. CLIP
# --------------------------------------------------------------------------------------------------------------


def ref_clip(a, b, temperature, weight_ab=0.5, weight_ba=0.5) -> float:
    L = _l2n(a) @ _l2n(b).T / temperature
    n = L.shape[0]
    idx = np.arange(n)
    ab = -(L[idx, idx] - _logsumexp(L, axis=1))  # rows of L
    ba = -(L.T[idx, idx] - _logsumexp(L.T, axis=1))  # rows of L^T
    return weight_ab * ab.mean() + weight_ba * ba.mean()


@pytest.mark.parametrize("seed,n,d", CASES)
@pytest.mark.parametrize("tensor_temperature", [False, True])
def test_clip_loss_matches_reference(seed, n, d, tensor_temperature):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, d)) * 3, rng.normal(size=(n, d))
    for tau in TEMPERATURES:
        temperature = torch.tensor(tau, dtype=torch.float64) if tensor_temperature else tau
        got = _scalar(losses.clip_loss(_t(a), _t(b), temperature=temperature))
        _close(got, ref_clip(a, b, tau))
    wab, wba = rng.uniform(0, 1, size=2)
    got = _scalar(losses.clip_loss(_t(a), _t(b), temperature=0.2, weight_ab=wab, weight_ba=wba))
    _close(got, ref_clip(a, b, 0.2, wab, wba))


def test_clip_loss_directions_are_distinct():
    """One-sided weights pick the a->b and b->a terms respectively (they differ on asymmetric inputs)."""
    rng = np.random.default_rng(100)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    ab = _scalar(losses.clip_loss(_t(a), _t(b), temperature=0.1, weight_ab=1.0, weight_ba=0.0))
    ba = _scalar(losses.clip_loss(_t(a), _t(b), temperature=0.1, weight_ab=0.0, weight_ba=1.0))
    _close(ab, ref_clip(a, b, 0.1, 1.0, 0.0))
    _close(ba, ref_clip(a, b, 0.1, 0.0, 1.0))
    assert abs(ab - ba) > 1e-3
    # the b->a term of (a, b) is the a->b term of (b, a)
    _close(ba, _scalar(losses.clip_loss(_t(b), _t(a), temperature=0.1, weight_ab=1.0, weight_ba=0.0)))


def test_clip_loss_is_scale_invariant():
    rng = np.random.default_rng(101)
    a, b = rng.normal(size=(7, 6)), rng.normal(size=(7, 6))
    base = _scalar(losses.clip_loss(_t(a), _t(b), temperature=0.3))
    scaled = _scalar(losses.clip_loss(_t(a * 17.0), _t(b * 0.01), temperature=0.3))
    _close(scaled, base)


def test_clip_loss_gradients():
    rng = np.random.default_rng(102)
    a, b = _t(rng.normal(size=(6, 8)), True), _t(rng.normal(size=(6, 8)), True)
    temperature = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    losses.clip_loss(a, b, temperature=temperature).backward()
    _assert_finite_grads(a, b)
    assert temperature.grad is not None and torch.isfinite(temperature.grad)


# --------------------------------------------------------------------------------------------------------------
# 2. SigLIP and soft targets
# --------------------------------------------------------------------------------------------------------------


def ref_siglip(a, b, scale, bias, targets=None) -> float:
    n = a.shape[0]
    logits = scale * (_l2n(a) @ _l2n(b).T) + bias
    t = np.eye(n) if targets is None else np.asarray(targets, dtype=np.float64)
    # -t log σ(l) - (1 - t) log σ(-l), with -log σ(y) = softplus(-y)
    return float(np.sum(t * _softplus(-logits) + (1 - t) * _softplus(logits)) / n)


def ref_siglip_paper(a, b, scale, bias) -> float:
    """The SigLIP paper's form: -(1/N) Σ_ij log σ(z_ij l_ij) with z = +1 on the diagonal, -1 elsewhere."""
    n = a.shape[0]
    logits = scale * (_l2n(a) @ _l2n(b).T) + bias
    z = 2 * np.eye(n) - 1
    return float(np.sum(np.log1p(np.exp(-z * logits))) / n)


def ref_soft_targets(labels, weight) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64)
    n = labels.shape[0]
    J = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            li, lj = labels[i] > 0.5, labels[j] > 0.5
            union = np.sum(li | lj)
            J[i, j] = np.sum(li & lj) / union if union > 0 else 0.0
    eye = np.eye(n)
    return eye + (1 - eye) * weight * J


@pytest.mark.parametrize("seed,n,d", CASES)
def test_siglip_loss_matches_reference(seed, n, d):
    rng = np.random.default_rng(200 + seed)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 0.5
    for scale, bias in [(10.0, -10.0), (1.0, 0.0), (3.7, 1.3), (25.0, -4.0)]:
        got = _scalar(losses.siglip_loss(_t(a), _t(b), scale=scale, bias=bias))
        _close(got, ref_siglip(a, b, scale, bias))
        # identity targets == the paper's ±1 form (both for the reference and the torch function)
        assert np.isclose(ref_siglip(a, b, scale, bias), ref_siglip_paper(a, b, scale, bias), rtol=1e-12)
        _close(got, ref_siglip_paper(a, b, scale, bias))
        # explicit identity targets == targets=None
        got_eye = _scalar(losses.siglip_loss(_t(a), _t(b), scale=scale, bias=bias, targets=_t(np.eye(n))))
        _close(got_eye, got)
    # scale and bias as (learnable) 0-d tensors
    got = _scalar(losses.siglip_loss(_t(a), _t(b), scale=_t(np.float64(5.0)), bias=_t(np.float64(-2.0))))
    _close(got, ref_siglip(a, b, 5.0, -2.0))


@pytest.mark.parametrize("seed,n,d", CASES)
def test_siglip_loss_soft_targets_match_reference(seed, n, d):
    rng = np.random.default_rng(300 + seed)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    targets = rng.uniform(0, 1, size=(n, n))
    got = _scalar(losses.siglip_loss(_t(a), _t(b), scale=10.0, bias=-5.0, targets=_t(targets)))
    _close(got, ref_siglip(a, b, 10.0, -5.0, targets))
    # targets from soft_targets
    labels = (rng.uniform(size=(n, 5)) < 0.4).astype(np.float64)
    t = ref_soft_targets(labels, 0.5)
    got = _scalar(losses.siglip_loss(_t(a), _t(b), scale=10.0, bias=-5.0,
                                     targets=losses.soft_targets(_t(labels), weight=0.5)))
    _close(got, ref_siglip(a, b, 10.0, -5.0, t))


def test_siglip_loss_divides_by_n_not_n_squared():
    rng = np.random.default_rng(301)
    for n in (2, 4, 9):
        a, b = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
        logits = 10.0 * (_l2n(a) @ _l2n(b).T) - 10.0
        z = 2 * np.eye(n) - 1
        total = np.sum(-np.log(1 / (1 + np.exp(-z * logits))))
        _close(_scalar(losses.siglip_loss(_t(a), _t(b), scale=10.0, bias=-10.0)), total / n)


@pytest.mark.parametrize("seed", range(6))
def test_soft_targets_match_reference(seed):
    rng = np.random.default_rng(400 + seed)
    n, c = int(rng.integers(2, 14)), int(rng.integers(1, 8))
    labels = (rng.uniform(size=(n, c)) < 0.35).astype(np.float64)
    labels[0] = 0.0  # a record with no label: empty union with another empty row -> J = 0
    if n > 2:
        labels[1] = 0.0
    weight = float(rng.uniform(0, 1))
    expected = ref_soft_targets(labels, weight)
    got = _to_numpy(losses.soft_targets(_t(labels), weight=weight)).astype(np.float64)
    assert got.shape == (n, n)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-7)
    np.testing.assert_array_equal(np.diag(got), np.ones(n))  # diagonal exactly 1, even for empty label rows
    np.testing.assert_allclose(got, got.T, atol=1e-12)


def test_soft_targets_hand_example():
    labels = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]], dtype=np.float64)
    # Jaccard: (0,1)=1/2, (0,2)=0, (0,4)=2/3, (1,4)=1/3, (2,4)=1/4, (2,3)=0, (3,3) empty union -> diag 1
    expected = np.array(
        [
            [1, 0.5, 0, 0, 2 / 3],
            [0.5, 1, 0, 0, 1 / 3],
            [0, 0, 1, 0, 1 / 4],
            [0, 0, 0, 1, 0],
            [2 / 3, 1 / 3, 1 / 4, 0, 1],
        ]
    )
    eye = np.eye(5)
    expected = eye + (1 - eye) * 0.8 * expected
    np.testing.assert_allclose(ref_soft_targets(labels, 0.8), expected, atol=1e-12)
    got = _to_numpy(losses.soft_targets(_t(labels), weight=0.8)).astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-7)


def test_siglip_loss_gradients():
    rng = np.random.default_rng(302)
    a, b = _t(rng.normal(size=(5, 6)), True), _t(rng.normal(size=(5, 6)), True)
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-10.0, dtype=torch.float64, requires_grad=True)
    targets = _t(ref_soft_targets((rng.uniform(size=(5, 3)) < 0.5).astype(float), 0.5))
    losses.siglip_loss(a, b, scale=scale, bias=bias, targets=targets).backward()
    _assert_finite_grads(a, b)
    for p in (scale, bias):
        assert p.grad is not None and torch.isfinite(p.grad)


# --------------------------------------------------------------------------------------------------------------
# 3. NT-Xent / SupCon
# --------------------------------------------------------------------------------------------------------------


def ref_nt_xent(z, keys, temperature) -> float:
    zn = _l2n(z)
    s = zn @ zn.T / temperature
    m = len(keys)
    per_anchor = []
    for i in range(m):
        positives = [p for p in range(m) if p != i and keys[p] == keys[i]]
        if not positives:
            continue
        others = [a for a in range(m) if a != i]
        log_denominator = _logsumexp(s[i, others], axis=0)
        per_anchor.append(-np.mean([s[i, p] - log_denominator for p in positives]))
    return float(np.mean(per_anchor))


@pytest.mark.parametrize("seed,b,d", [(0, 1, 3), (1, 2, 5), (2, 4, 16), (3, 8, 32), (4, 6, 4)])
def test_nt_xent_simclr_two_views(seed, b, d):
    rng = np.random.default_rng(500 + seed)
    z = rng.normal(size=(2 * b, d))
    keys = np.concatenate([np.arange(b), np.arange(b)])
    for tau in TEMPERATURES:
        got = _scalar(losses.nt_xent_loss(_t(z), torch.as_tensor(keys, dtype=torch.int64), temperature=tau))
        _close(got, ref_nt_xent(z, keys, tau))


def test_nt_xent_simclr_matches_textbook_form():
    """Two views, one positive each: the SimCLR loss is cross-entropy over the 2B-1 others, averaged."""
    rng = np.random.default_rng(510)
    b, tau = 5, 0.5
    z = rng.normal(size=(2 * b, 8))
    zn = _l2n(z)
    s = zn @ zn.T / tau
    total = 0.0
    for i in range(2 * b):
        j = (i + b) % (2 * b)
        total += -np.log(np.exp(s[i, j]) / (np.sum(np.exp(s[i])) - np.exp(s[i, i])))
    keys = torch.as_tensor(np.r_[np.arange(b), np.arange(b)], dtype=torch.int64)
    _close(_scalar(losses.nt_xent_loss(_t(z), keys, temperature=tau)), total / (2 * b))


@pytest.mark.parametrize("seed", range(6))
def test_nt_xent_patient_positives_with_singletons(seed):
    rng = np.random.default_rng(600 + seed)
    m = int(rng.integers(5, 17))
    d = int(rng.integers(3, 33))
    # a few multi-record patients plus singletons; ensure at least one group of size >= 2 and one singleton
    keys = rng.integers(0, max(2, m // 3), size=m)
    keys[0] = keys[1] = 1000  # a shared key
    keys[2] = 2000  # a singleton: excluded as anchor, still in everyone's denominator
    keys = rng.permutation(keys)
    z = rng.normal(size=(m, d))
    for tau in (0.07, 0.2, 1.0):
        got = _scalar(losses.nt_xent_loss(_t(z), torch.as_tensor(keys, dtype=torch.int64), temperature=tau))
        _close(got, ref_nt_xent(z, keys, tau))


def test_nt_xent_singletons_count_in_denominator():
    """Adding a singleton changes the loss (it is a negative) but it is never an anchor."""
    rng = np.random.default_rng(650)
    z = rng.normal(size=(5, 6))
    keys = np.array([0, 0, 1, 1, 7])
    with_single = _scalar(losses.nt_xent_loss(_t(z), torch.as_tensor(keys), temperature=0.3))
    without = _scalar(losses.nt_xent_loss(_t(z[:4]), torch.as_tensor(keys[:4]), temperature=0.3))
    _close(with_single, ref_nt_xent(z, keys, 0.3))
    _close(without, ref_nt_xent(z[:4], keys[:4], 0.3))
    assert with_single > without


def test_nt_xent_gradients():
    rng = np.random.default_rng(660)
    z = _t(rng.normal(size=(8, 6)), True)
    keys = torch.tensor([0, 1, 2, 3, 0, 1, 2, 9])
    losses.nt_xent_loss(z, keys, temperature=0.1).backward()
    _assert_finite_grads(z)


# --------------------------------------------------------------------------------------------------------------
# 4. Triplet loss and miners
# --------------------------------------------------------------------------------------------------------------


def ref_triplet(emb, triples, margin) -> float:
    e = _l2n(emb)
    terms = []
    for a, p, n in triples:
        d_ap = np.sqrt(np.sum((e[a] - e[p]) ** 2))
        d_an = np.sqrt(np.sum((e[a] - e[n]) ** 2))
        terms.append(max(0.0, d_ap - d_an + margin))
    active = [t for t in terms if t > 0]
    return float(np.mean(active)) if active else 0.0


def ref_label_triplets(labels) -> set[tuple[int, int, int]]:
    n = len(labels)
    return {
        (a, p, q)
        for a in range(n)
        for p in range(n)
        for q in range(n)
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]
    }


def _ref_pool(signals, downsample) -> np.ndarray:
    x = np.asarray(signals, dtype=np.float64)
    n, leads, t = x.shape
    out = np.empty((n, leads, t // downsample))
    for k in range(t // downsample):
        out[:, :, k] = x[:, :, k * downsample:(k + 1) * downsample].mean(axis=2)
    return out


def _ref_dtw(xa, xb) -> float:
    """Multivariate DTW, no window: xa, xb are [leads, T]."""
    ta, tb = xa.shape[1], xb.shape[1]
    C = np.full((ta, tb), np.inf)
    for i in range(ta):
        for j in range(tb):
            cost = float(np.sum((xa[:, i] - xb[:, j]) ** 2))
            if i == 0 and j == 0:
                C[i, j] = cost
                continue
            best = np.inf
            if i > 0:
                best = min(best, C[i - 1, j])
            if j > 0:
                best = min(best, C[i, j - 1])
            if i > 0 and j > 0:
                best = min(best, C[i - 1, j - 1])
            C[i, j] = cost + best
    return float(np.sqrt(C[ta - 1, tb - 1]))


def ref_pairwise(signals, metric, downsample) -> np.ndarray:
    x = _ref_pool(signals, downsample)
    n = x.shape[0]
    D = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if metric == "euclidean":
                D[a, b] = np.sqrt(np.sum((x[a] - x[b]) ** 2))
            elif metric == "dtw":
                D[a, b] = _ref_dtw(x[a], x[b])
            else:
                raise ValueError(metric)
    return D


def ref_distance_triplets(D, k) -> set[tuple[int, int, int]]:
    n = D.shape[0]
    out = set()
    for a in range(n):
        candidates = sorted((j for j in range(n) if j != a), key=lambda j: (D[a, j], j))
        positives = candidates[:k]
        negatives = [q for q in range(n) if q != a and q not in positives]
        out.update((a, p, q) for p in positives for q in negatives)
    return out


def test_dtw_reference_sanity():
    """The DTW reference itself: a time-shifted copy aligns (almost) for free, unlike in Euclidean distance."""
    t = np.linspace(0, 2 * np.pi, 30)
    a = np.stack([np.sin(t), np.cos(t)])
    b = np.roll(a, 3, axis=1)
    b[:, :3] = a[:, :1]  # pad with the first sample: a pure time shift
    assert _ref_dtw(a, a) == 0.0
    assert _ref_dtw(a, b) < 0.3 * np.sqrt(np.sum((a - b) ** 2))
    # 1-D hand example: [0, 1, 2] vs [0, 2]: path (0,0),(1,0)|(1,1),(2,1): costs 0 + 1 + 0 = 1
    assert np.isclose(_ref_dtw(np.array([[0.0, 1.0, 2.0]]), np.array([[0.0, 2.0]])), 1.0)
    # symmetric
    rng = np.random.default_rng(700)
    x, y = rng.normal(size=(3, 9)), rng.normal(size=(3, 9))
    assert np.isclose(_ref_dtw(x, y), _ref_dtw(y, x))


@pytest.mark.parametrize("seed", range(5))
def test_label_triplets_match_enumeration(seed):
    rng = np.random.default_rng(800 + seed)
    n = int(rng.integers(2, 13))
    labels = rng.integers(0, int(rng.integers(1, 5)), size=n)
    got = _triplet_set(losses.label_triplets(torch.as_tensor(labels, dtype=torch.int64)))
    assert got == ref_label_triplets(labels.tolist())


def test_label_triplets_edge_cases():
    assert _triplet_set(losses.label_triplets(torch.tensor([3, 3, 3]))) == set()  # no negatives
    assert _triplet_set(losses.label_triplets(torch.tensor([0, 1, 2]))) == set()  # no positives
    assert _triplet_set(losses.label_triplets(torch.tensor([0, 0, 1]))) == {(0, 1, 2), (1, 0, 2)}


@pytest.mark.parametrize("metric", ["euclidean", "dtw"])
@pytest.mark.parametrize("seed,n,leads,t,downsample", [(0, 4, 1, 20, 1), (1, 6, 3, 20, 2), (2, 7, 2, 24, 4),
                                                       (3, 9, 12, 20, 1), (4, 5, 2, 30, 3)])
def test_pairwise_distances_match_reference(metric, seed, n, leads, t, downsample):
    rng = np.random.default_rng(900 + seed)
    signals = rng.normal(size=(n, leads, t)).cumsum(axis=2) * 0.3
    expected = ref_pairwise(signals, metric, downsample)
    for as_torch in (False, True):
        inp = torch.as_tensor(signals) if as_torch else signals
        got = losses.pairwise_distances(inp, metric=metric, downsample=downsample)
        assert isinstance(got, np.ndarray), f"pairwise_distances returned {type(got)}, not a numpy array"
        assert got.shape == (n, n)
        np.testing.assert_allclose(got.astype(np.float64), expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_pairwise_distances_float32_input():
    rng = np.random.default_rng(950)
    signals = rng.normal(size=(5, 2, 20)).astype(np.float32)
    for metric in ("euclidean", "dtw"):
        expected = ref_pairwise(signals.astype(np.float64), metric, 2)
        got = losses.pairwise_distances(signals, metric=metric, downsample=2)
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected, rtol=1e-5, atol=1e-5)


def test_dtw_is_not_euclidean():
    """A shifted pattern is closer under DTW than under Euclidean distance (guards a metric mix-up)."""
    t = np.linspace(0, 4 * np.pi, 40)
    base = np.sin(t)
    signals = np.stack([base, np.roll(base, 4), -base])[:, None, :]
    dtw = losses.pairwise_distances(signals, metric="dtw", downsample=1)
    euc = losses.pairwise_distances(signals, metric="euclidean", downsample=1)
    assert dtw[0, 1] < 0.5 * euc[0, 1]
    np.testing.assert_allclose(dtw, ref_pairwise(signals, "dtw", 1), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("metric", ["euclidean", "dtw"])
@pytest.mark.parametrize("seed,n,k,downsample", [(0, 3, 1, 1), (1, 6, 1, 2), (2, 8, 2, 1), (3, 7, 3, 4)])
def test_distance_triplets_match_reference(metric, seed, n, k, downsample):
    rng = np.random.default_rng(1000 + seed)
    signals = rng.normal(size=(n, 2, 20)).cumsum(axis=2) * 0.3
    expected = ref_distance_triplets(ref_pairwise(signals, metric, downsample), k)
    for inp in (signals, torch.as_tensor(signals)):
        got = _triplet_set(losses.distance_triplets(inp, metric=metric, downsample=downsample, k=k))
        assert got == expected


def test_distance_triplets_ties_break_by_lower_index():
    # record 0 is equidistant from 1, 2 and 3; record 4 is far away
    signals = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.0]], [[9.0, 9.0]]])
    got = _triplet_set(losses.distance_triplets(signals, metric="euclidean", downsample=1, k=2))
    assert {(p, q) for a, p, q in got if a == 0} == {(1, 3), (1, 4), (2, 3), (2, 4)}
    assert got == ref_distance_triplets(ref_pairwise(signals, "euclidean", 1), 2)


@pytest.mark.parametrize("seed,n,d", CASES)
def test_triplet_loss_matches_reference(seed, n, d):
    rng = np.random.default_rng(1100 + seed)
    emb = rng.normal(size=(n, d))
    triples = [tuple(int(v) for v in rng.integers(0, n, size=3)) for _ in range(int(rng.integers(1, 40)))]
    for margin in (0.05, 0.2, 0.5, 1.0):
        got = _scalar(losses.triplet_loss(_t(emb), _triplet_tensors(triples), margin=margin))
        _close(got, ref_triplet(emb, triples, margin))


def test_triplet_loss_averages_only_active_triplets():
    # 1-D directions make the distances exact: e0=(1,0), e1=(1,0)*2 (same direction), e2=(-1,0), e3=(0,1)
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    # (0,1,2): d_ap=0, d_an=2 -> max(0, -2 + m) = 0 for m=0.5 (inactive)
    # (0,3,1): d_ap=sqrt2, d_an=0 -> sqrt2 + 0.5 (active); (0,2,3): 2 - sqrt2 + 0.5 (active)
    triples = [(0, 1, 2), (0, 3, 1), (0, 2, 3)]
    expected = ((np.sqrt(2) + 0.5) + (2 - np.sqrt(2) + 0.5)) / 2
    assert np.isclose(ref_triplet(emb, triples, 0.5), expected)
    _close(_scalar(losses.triplet_loss(_t(emb), _triplet_tensors(triples), margin=0.5)), expected)


def test_triplet_loss_zero_when_nothing_active_or_empty():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    got = _scalar(losses.triplet_loss(_t(emb), _triplet_tensors([(0, 1, 2), (1, 0, 2)]), margin=0.5))
    assert got == 0.0
    got = _scalar(losses.triplet_loss(_t(emb), _triplet_tensors([]), margin=0.5))
    assert got == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_triplet_loss_with_label_miner(seed):
    rng = np.random.default_rng(1200 + seed)
    n = int(rng.integers(3, 13))
    labels = rng.integers(0, 3, size=n)
    emb = rng.normal(size=(n, 8))
    mined = losses.label_triplets(torch.as_tensor(labels, dtype=torch.int64))
    ours = ref_label_triplets(labels.tolist())
    for margin in (0.1, 0.5):
        got = _scalar(losses.triplet_loss(_t(emb), mined, margin=margin))
        _close(got, ref_triplet(emb, ours, margin))


@pytest.mark.parametrize("metric", ["euclidean", "dtw"])
@pytest.mark.parametrize("seed", range(3))
def test_triplet_loss_with_distance_miner(metric, seed):
    rng = np.random.default_rng(1300 + seed)
    n = int(rng.integers(3, 9))
    signals = rng.normal(size=(n, 3, 20)).cumsum(axis=2)
    emb = rng.normal(size=(n, 6))
    mined = losses.distance_triplets(signals, metric=metric, downsample=2, k=1)
    ours = ref_distance_triplets(ref_pairwise(signals, metric, 2), 1)
    for margin in (0.2, 1.0):
        got = _scalar(losses.triplet_loss(_t(emb), mined, margin=margin))
        _close(got, ref_triplet(emb, ours, margin))


def test_triplet_loss_gradients():
    rng = np.random.default_rng(1400)
    emb = _t(rng.normal(size=(6, 5)), True)
    triples = losses.label_triplets(torch.tensor([0, 0, 1, 1, 2, 2]))
    loss = losses.triplet_loss(emb, triples, margin=1.0)
    assert _scalar(loss) > 0
    loss.backward()
    _assert_finite_grads(emb)


# --------------------------------------------------------------------------------------------------------------
# 5. CLEF
# --------------------------------------------------------------------------------------------------------------


def _ref_clef_parts(z1, z2, risk, missing, floor):
    n = z1.shape[0]
    s = _l2n(z1) @ _l2n(z2).T
    off = ~np.eye(n, dtype=bool)
    delta = (risk[:, None] - risk[None, :]) ** 2
    lo, hi = delta[off].min(), delta[off].max()
    delta_n = np.zeros((n, n)) if hi == lo else (delta - lo) / (hi - lo)
    presence = np.exp(-np.outer(missing, missing))
    w = np.maximum(delta_n, floor) * presence
    return s, off, delta_n, presence, w


def _ref_weighted_nce(s, w, temperature) -> float:
    """mean_i (l12_i + l21_i) / 2 with off-diagonal weights w (diagonal of w ignored)."""
    n = s.shape[0]
    def one_way(sim):
        out = []
        for i in range(n):
            pos = np.exp(sim[i, i] / temperature)
            neg = sum(w[i, j] * np.exp(sim[i, j] / temperature) for j in range(n) if j != i)
            out.append(-np.log(pos / (pos + neg)))
        return np.array(out)
    return float(np.mean((one_way(s) + one_way(s.T)) / 2))


def ref_clef(z1, z2, risk, missing, temperature, floor=0.2, align_weight=0.5, force_unit_weights=False) -> float:
    risk, missing = np.asarray(risk, dtype=np.float64), np.asarray(missing, dtype=np.float64)
    s, off, delta_n, presence, w = _ref_clef_parts(z1, z2, risk, missing, floor)
    if force_unit_weights:
        w = np.ones_like(w)
    nce = _ref_weighted_nce(s, w, temperature)
    align = np.mean((presence * ((1 - s) / 2 - delta_n) ** 2)[off])
    return float(nce + align_weight * align)


def _clef(z1, z2, risk, missing, **kw) -> float:
    return _scalar(losses.clef_loss(_t(z1), _t(z2), _t(risk), _t(missing), **kw))


@pytest.mark.parametrize("seed,n,d", CASES)
def test_clef_loss_matches_reference(seed, n, d):
    rng = np.random.default_rng(1500 + seed)
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    risk = rng.uniform(0, 1, size=n)
    missing = rng.choice([0.0, 0.5, 1.0, 0.25], size=n)
    for tau in TEMPERATURES:
        for floor, align_weight in [(0.2, 0.5), (0.0, 1.0), (0.5, 0.0), (0.1, 2.0)]:
            got = _clef(z1, z2, risk, missing, temperature=tau, floor=floor, align_weight=align_weight)
            _close(got, ref_clef(z1, z2, risk, missing, tau, floor, align_weight))


def test_clef_loss_defaults():
    rng = np.random.default_rng(1550)
    z1, z2 = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    risk, missing = rng.normal(size=7) * 3, np.array([1, 1, 0.5, 0, 0, 0.5, 0.0])
    _close(_clef(z1, z2, risk, missing, temperature=0.1), ref_clef(z1, z2, risk, missing, 0.1))
    _close(_clef(z1, z2, risk, missing, temperature=torch.tensor(0.1, dtype=torch.float64)),
           ref_clef(z1, z2, risk, missing, 0.1))


def test_clef_loss_missing_metadata():
    """Some records with all metadata missing (m=1), some half (m=0.5): presence factors enter w and A."""
    rng = np.random.default_rng(1600)
    n = 8
    z1, z2 = rng.normal(size=(n, 6)), rng.normal(size=(n, 6))
    risk = rng.uniform(0, 0.4, size=n)
    missing = np.array([1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.5, 1.0])
    got = _clef(z1, z2, risk, missing, temperature=0.2, floor=0.2, align_weight=0.5)
    _close(got, ref_clef(z1, z2, risk, missing, 0.2, 0.2, 0.5))
    # and the presence factor matters
    assert abs(got - ref_clef(z1, z2, risk, np.zeros(n), 0.2, 0.2, 0.5)) > 1e-4


def test_clef_loss_equal_risks_use_floor():
    rng = np.random.default_rng(1700)
    n, tau, floor = 6, 0.15, 0.3
    z1, z2 = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
    risk = np.full(n, 0.37)
    missing = np.array([0.0, 0.5, 1.0, 0.0, 0.5, 0.0])
    expected = ref_clef(z1, z2, risk, missing, tau, floor, 0.5)
    # by hand: Δ̃ = 0 -> w = floor * exp(-m_i m_j), A = mean_{i!=j} exp(-m_i m_j) ((1 - s_ij)/2)^2
    s = _l2n(z1) @ _l2n(z2).T
    presence = np.exp(-np.outer(missing, missing))
    off = ~np.eye(n, dtype=bool)
    by_hand = _ref_weighted_nce(s, floor * presence, tau) + 0.5 * np.mean((presence * ((1 - s) / 2) ** 2)[off])
    assert np.isclose(expected, by_hand, rtol=1e-12)
    _close(_clef(z1, z2, risk, missing, temperature=tau, floor=floor, align_weight=0.5), expected)


def test_clef_loss_min_max_uses_off_diagonal_only():
    """The diagonal Δ_ii = 0 must not set the minimum: with risks 0, 1, 3 the off-diagonal Δ are 1, 4, 9."""
    rng = np.random.default_rng(1750)
    z1, z2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    risk, missing = np.array([0.0, 1.0, 3.0]), np.zeros(3)
    _, _, delta_n, _, _ = _ref_clef_parts(z1, z2, risk, missing, 0.0)
    np.testing.assert_allclose(delta_n[0, 1], 0.0)
    np.testing.assert_allclose(delta_n[1, 2], 3 / 8)
    np.testing.assert_allclose(delta_n[0, 2], 1.0)
    _close(_clef(z1, z2, risk, missing, temperature=0.3, floor=0.0, align_weight=1.0),
           ref_clef(z1, z2, risk, missing, 0.3, 0.0, 1.0))


def test_clef_reference_reduces_to_infonce_with_unit_weights():
    rng = np.random.default_rng(1800)
    for n, d, tau in [(2, 3, 0.07), (5, 8, 0.2), (9, 16, 1.0)]:
        z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
        risk = rng.uniform(size=n)
        unit = ref_clef(z1, z2, risk, np.zeros(n), tau, floor=0.0, align_weight=0.0, force_unit_weights=True)
        assert np.isclose(unit, ref_clip(z1, z2, tau), rtol=1e-12)


def test_clef_loss_reduces_to_clip_with_unit_weights():
    """floor = 1 and no missing metadata make every w_ij = max(Δ̃, 1) = 1: L_nce is then CLIP's InfoNCE."""
    rng = np.random.default_rng(1850)
    for n, d, tau in [(2, 3, 0.07), (5, 8, 0.2), (12, 16, 1.0)]:
        z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
        risk = rng.uniform(size=n)
        got = _clef(z1, z2, risk, np.zeros(n), temperature=tau, floor=1.0, align_weight=0.0)
        _close(got, ref_clip(z1, z2, tau))
        _close(got, _scalar(losses.clip_loss(_t(z1), _t(z2), temperature=tau)))


def test_clef_loss_gradients():
    rng = np.random.default_rng(1900)
    z1, z2 = _t(rng.normal(size=(6, 5)), True), _t(rng.normal(size=(6, 5)), True)
    risk, missing = _t(rng.uniform(size=6)), _t(np.array([0, 0.5, 1, 0, 0, 1.0]))
    losses.clef_loss(z1, z2, risk, missing, temperature=0.1).backward()
    _assert_finite_grads(z1, z2)
    # equal risks (max == min): still finite
    z1.grad = z2.grad = None
    losses.clef_loss(z1, z2, _t(np.full(6, 0.2)), missing, temperature=0.1).backward()
    _assert_finite_grads(z1, z2)
    # floor = 0: the pair with the smallest risk difference gets w = 0 (its term drops out), still finite
    z1.grad = z2.grad = None
    losses.clef_loss(z1, z2, risk, missing, temperature=0.1, floor=0.0).backward()
    _assert_finite_grads(z1, z2)


# --------------------------------------------------------------------------------------------------------------
# float32 inputs (what training feeds): same values within float32 precision
# --------------------------------------------------------------------------------------------------------------


def test_float32_inputs_agree_with_reference():
    rng = np.random.default_rng(2000)
    n, d, tau = 12, 16, 0.07
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    f32 = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32)
    tol = {"rtol": 1e-4, "atol": 1e-4}
    assert np.isclose(_scalar(losses.clip_loss(f32(a), f32(b), temperature=tau)), ref_clip(a, b, tau), **tol)
    assert np.isclose(_scalar(losses.siglip_loss(f32(a), f32(b), scale=10.0, bias=-10.0)),
                      ref_siglip(a, b, 10.0, -10.0), **tol)
    keys = np.r_[np.arange(n // 2), np.arange(n // 2)]
    assert np.isclose(_scalar(losses.nt_xent_loss(f32(a), torch.as_tensor(keys), temperature=tau)),
                      ref_nt_xent(a, keys, tau), **tol)
    labels = rng.integers(0, 3, size=n)
    assert np.isclose(_scalar(losses.triplet_loss(f32(a), losses.label_triplets(torch.as_tensor(labels)), margin=0.5)),
                      ref_triplet(a, ref_label_triplets(labels.tolist()), 0.5), **tol)
    risk, missing = rng.uniform(size=n), rng.choice([0.0, 0.5, 1.0], size=n)
    got = _scalar(losses.clef_loss(f32(a), f32(b), f32(risk), f32(missing), temperature=tau))
    assert np.isclose(got, ref_clef(a, b, risk, missing, tau), **tol)


# --------------------------------------------------------------------------------------------------------------
# 6. StenCE's auxiliary stenosis loss (levels of BCE on the angiography branch)
# --------------------------------------------------------------------------------------------------------------


def ref_grouped_bce(logits, targets, bounds, weights) -> float:
    """Σ_level w · mean of BCE-with-logits over the level's known entries, written elementwise."""
    total = 0.0
    for (lo, hi), w in zip(bounds, weights):
        terms = []
        for i in range(logits.shape[0]):
            for j in range(lo, hi):
                y, x = targets[i, j], logits[i, j]
                if np.isfinite(y):
                    terms.append(-(y * np.log(1 / (1 + np.exp(-x))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-x)))))
        if terms:
            total += w * np.mean(terms)
    return float(total)


@pytest.mark.parametrize("seed,n,widths", [(0, 2, (1, 3)), (1, 5, (1, 3)), (2, 8, (2,)), (3, 16, (1, 1, 4))])
def test_grouped_bce_matches_reference(seed, n, widths):
    rng = np.random.default_rng(2000 + seed)
    bounds = list(zip(np.cumsum((0, *widths))[:-1], np.cumsum(widths)))
    logits = rng.normal(size=(n, sum(widths))) * 2
    targets = (rng.uniform(size=logits.shape) < 0.4).astype(float)
    targets[rng.uniform(size=logits.shape) < 0.25] = np.nan  # unknown entries (no angiogram row for the artery)
    weights = list(rng.uniform(0.1, 1.0, size=len(widths)))
    groups = [slice(int(lo), int(hi)) for lo, hi in bounds]
    got = _scalar(losses.grouped_bce_loss(_t(logits), _t(targets), groups, weights))
    _close(got, ref_grouped_bce(logits, targets, bounds, weights))


def test_grouped_bce_edge_cases():
    logits = _t(np.array([[0.3, -1.0, 2.0], [1.5, 0.2, -0.7]]), True)
    nothing = np.full((2, 3), np.nan)
    loss = losses.grouped_bce_loss(logits, _t(nothing), [slice(0, 1), slice(1, 3)], [0.4, 0.4])
    assert _scalar(loss) == 0.0  # no known target in the batch: no auxiliary loss, still differentiable
    loss.backward()
    # one level unknown: only the other counts, with its own weight (no renormalisation)
    targets = np.array([[1.0, np.nan, np.nan], [0.0, np.nan, np.nan]])
    got = _scalar(losses.grouped_bce_loss(_t(logits.detach().numpy()), _t(targets), [slice(0, 1), slice(1, 3)],
                                          [0.4, 0.4]))
    _close(got, 0.4 * np.mean([_softplus(-0.3), _softplus(1.5)]))


# --------------------------------------------------------------------------------------------------------------
# 7. FG-CLEP: soft targets from the semantic similarity of the reports
# --------------------------------------------------------------------------------------------------------------


def ref_semantic_targets(e, weight) -> np.ndarray:
    n = len(e)
    t = np.eye(n)
    for i in range(n):
        for j in range(n):
            if i != j:
                cos = e[i] @ e[j] / (np.linalg.norm(e[i]) * np.linalg.norm(e[j]))
                t[i, j] = weight * min(max(cos, 0.0), 1.0)
    return t


@pytest.mark.parametrize("seed,n,d", CASES)
def test_semantic_targets_and_siglip_match_reference(seed, n, d):
    rng = np.random.default_rng(2100 + seed)
    e = rng.normal(size=(n, d)) + 0.5  # partly aligned reports: some cosines positive, some negative
    for weight in (0.0, 0.3, 0.5, 1.0):
        got = _to_numpy(losses.semantic_targets(_t(e), weight=weight))
        np.testing.assert_allclose(got, ref_semantic_targets(e, weight), rtol=RTOL, atol=1e-9)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    t = losses.semantic_targets(_t(e), weight=0.5)
    _close(_scalar(losses.siglip_loss(_t(a), _t(b), scale=10.0, bias=-10.0, targets=t)),
           ref_siglip(a, b, 10.0, -10.0, ref_semantic_targets(e, 0.5)))


def test_semantic_targets_of_identical_reports_are_the_weight():
    e = np.tile(np.array([[0.2, 1.0, -0.4]]), (4, 1))
    got = _to_numpy(losses.semantic_targets(_t(e), weight=0.5))
    np.testing.assert_allclose(got, np.eye(4) + (1 - np.eye(4)) * 0.5, atol=1e-12)


# --------------------------------------------------------------------------------------------------------------
# 8. Jeong et al.: the published miners and losses (mandiehyewon/ssldml)
# --------------------------------------------------------------------------------------------------------------


def ref_mean_abs(x) -> np.ndarray:
    """ssldml's calculate_euclidean: torch.mean(torch.sqrt((x_i - x_j) ** 2)) for every pair."""
    n = len(x)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = np.mean(np.sqrt((x[i] - x[j]) ** 2))
    return out


def ref_jeong_positive(d, a, positive) -> int:
    if positive == "nearest":  # the paper: the ECG at the smallest distance (first of equals)
        row = d[a].copy()
        row[a] = np.inf
        return int(np.argmin(row))
    # the released default path: argpartition's second-largest entry, the largest when that is the anchor
    idx = np.argpartition(d[a], -2)[-2:]
    return int(idx[1] if idx[0] == a else idx[0])


def ref_jeong_negative_candidates(d, a, p, topk) -> set[int]:
    order = np.argsort(-np.abs(d[a]), kind="stable")[:topk]
    found = {int(j) for j in order if j not in (a, p)}
    if not found:
        rest = [int(j) for j in np.argsort(-d[a], kind="stable") if j not in (a, p)]
        found = {rest[0]}
    return found


@pytest.mark.parametrize("seed,n,leads,t", [(0, 3, 1, 10), (1, 5, 12, 25), (2, 9, 3, 40)])
def test_mean_abs_distance_matches_the_released_formula(seed, n, leads, t):
    x = np.random.default_rng(2200 + seed).normal(size=(n, leads, t))
    np.testing.assert_allclose(_to_numpy(losses.mean_abs_distances(_t(x))), ref_mean_abs(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("positive", ["nearest", "second_farthest"])
@pytest.mark.parametrize("seed,n,topk", [(0, 3, 2), (1, 4, 2), (2, 7, 2), (3, 12, 1), (4, 10, 3)])
def test_jeong_distance_miner_matches_reference(positive, seed, n, topk):
    rng = np.random.default_rng(2300 + seed)
    d = ref_mean_abs(rng.normal(size=(n, 2, 8)))  # distinct distances: argpartition and a stable sort agree
    a, p, neg = losses.jeong_distance_triplets(d, positive=positive, neg_topk=topk, rng=np.random.default_rng(seed))
    assert _to_numpy(a).tolist() == list(range(n))  # one triplet per anchor
    for ai, pi, ni in zip(_to_numpy(a), _to_numpy(p), _to_numpy(neg)):
        assert pi == ref_jeong_positive(d, ai, positive)
        assert ni in ref_jeong_negative_candidates(d, ai, pi, topk) and ni not in (ai, pi)


def test_jeong_negative_is_drawn_from_the_two_farthest():
    d = ref_mean_abs(np.random.default_rng(2350).normal(size=(8, 1, 6)))
    drawn = {int(_to_numpy(losses.jeong_distance_triplets(d, rng=np.random.default_rng(s))[2])[0]) for s in range(40)}
    assert drawn == ref_jeong_negative_candidates(d, 0, ref_jeong_positive(d, 0, "nearest"), 2)
    assert len(drawn) == 2


def test_jeong_distance_miner_edge_cases():
    empty = losses.jeong_distance_triplets(np.zeros((2, 2)), rng=np.random.default_rng(0))
    assert all(len(v) == 0 for v in empty)
    # identical ECGs (all distances tie): the positive is the first other ECG, never the anchor
    a, p, n = losses.jeong_distance_triplets(np.zeros((4, 4)), rng=np.random.default_rng(0))
    assert _to_numpy(p).tolist() == [1, 0, 0, 0]
    assert all(ni not in (ai, pi) for ai, pi, ni in zip(_to_numpy(a), _to_numpy(p), _to_numpy(n)))


def ref_continuous_triplets(y) -> list[tuple[int, int, int]]:
    """ssldml's labelbased miner over the labelled records, the anchor never its own negative."""
    y = np.asarray(y, dtype=float)
    idx = [i for i in range(len(y)) if np.isfinite(y[i])]
    out = []
    if len(idx) < 2:
        return out
    for a in idx:
        diff = np.array([abs(y[j] - y[a]) for j in idx])
        diff_neg = diff.copy()
        diff_neg[idx.index(a)] = -np.inf
        neg = idx[int(np.argmax(diff_neg))]
        diff[idx.index(a)] = np.inf
        pos = idx[int(np.argmin(diff))]
        out.append((a, pos, neg))
    return out


@pytest.mark.parametrize("seed,n", [(0, 2), (1, 3), (2, 8), (3, 16), (4, 33)])
def test_continuous_label_miner_matches_reference(seed, n):
    rng = np.random.default_rng(2400 + seed)
    y = np.round(rng.uniform(5, 35, size=n))  # whole mmHg: ties happen
    y[rng.uniform(size=n) < 0.2] = np.nan
    mined = list(zip(*(_to_numpy(v).tolist() for v in losses.continuous_label_triplets(_t(y)))))
    assert mined == ref_continuous_triplets(y)


def test_continuous_label_miner_ties_and_missing_values():
    # all equal: the first other record is both positive and negative (the released tie-breaking), never the anchor
    assert list(zip(*(v.tolist() for v in losses.continuous_label_triplets(np.array([12.0, 12.0, 12.0]))))) == [
        (0, 1, 1), (1, 0, 0), (2, 0, 0)]
    # a partial tie: 1 and 2 tie for anchor 0's positive (lower index wins), 3 is the farthest
    assert list(zip(*(v.tolist() for v in losses.continuous_label_triplets(np.array([10.0, 12.0, 8.0, 30.0]))))) == [
        (0, 1, 3), (1, 0, 3), (2, 0, 3), (3, 1, 2)]
    assert all(len(v) == 0 for v in losses.continuous_label_triplets(np.array([np.nan, 14.0, np.nan])))


def ref_jeong_triplet(e, triples, margin) -> float:
    terms = [max(0.0, np.sum((e[a] - e[p]) ** 2) - np.sum((e[a] - e[n]) ** 2) + margin) for a, p, n in triples]
    return float(np.mean(terms))


def ref_jeong_margin(e, triples, betas, margin) -> float:
    pos, neg = [], []
    for (a, p, n), beta in zip(triples, betas):
        d_ap = np.sqrt(np.sum((e[a] - e[p]) ** 2) + 1e-8)
        d_an = np.sqrt(np.sum((e[a] - e[n]) ** 2) + 1e-8)
        pos.append(max(0.0, d_ap - beta + margin))
        neg.append(max(0.0, beta - d_an + margin))
    active = sum(1 for x, y in zip(pos, neg) if x > 0 or y > 0)  # torch's bool "+" is a logical or
    total = sum(pos) + sum(neg)
    return total / active if active else total


@pytest.mark.parametrize("seed,n,d", CASES)
def test_jeong_losses_match_reference(seed, n, d):
    rng = np.random.default_rng(2500 + seed)
    e = rng.normal(size=(n, d)) * rng.uniform(0.2, 3)  # unnormalised: the scale matters
    triples = [(int(a), int(rng.integers(n)), int(rng.integers(n))) for a in range(n)]
    tensors = _triplet_tensors(triples)
    for margin in (0.0, 0.2, 1.0, 5.0):
        _close(_scalar(losses.jeong_triplet_loss(_t(e), tensors, margin=margin)),
               ref_jeong_triplet(e, sorted(triples), margin))
        betas = rng.uniform(0.5, 2.0, size=len(triples))
        got = _scalar(losses.jeong_margin_loss(_t(e), tensors, _t(betas), margin=margin))
        _close(got, ref_jeong_margin(e, sorted(triples), betas, margin))


def test_jeong_triplet_loss_is_not_normalised_and_averages_every_triplet():
    e = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    # (0, 1, 2): 1 - 9 + 0.2 < 0 -> 0; (2, 1, 0): 4 - 9 + 0.2 < 0 -> 0; (1, 2, 0): 4 - 1 + 0.2 = 3.2
    tensors = _triplet_tensors([(0, 1, 2), (1, 2, 0), (2, 1, 0)])
    _close(_scalar(losses.jeong_triplet_loss(_t(e), tensors, margin=0.2)), 3.2 / 3)
    _close(_scalar(losses.jeong_triplet_loss(_t(e * 10), tensors, margin=0.2)), (400 - 100 + 0.2) / 3)
    empty = _triplet_tensors([])
    assert _scalar(losses.jeong_triplet_loss(_t(e), empty, margin=0.2)) == 0.0
    assert _scalar(losses.jeong_margin_loss(_t(e), empty, _t(np.zeros(0)), margin=0.2)) == 0.0


def test_jeong_losses_gradients():
    rng = np.random.default_rng(2550)
    e = _t(rng.normal(size=(6, 4)), True)
    beta = torch.full((6,), 1.2, dtype=torch.float64, requires_grad=True)
    tensors = _triplet_tensors(list(zip(*(v.tolist() for v in losses.continuous_label_triplets(rng.uniform(size=6))))))
    (losses.jeong_triplet_loss(e, tensors, margin=0.2) + losses.jeong_margin_loss(e, tensors, beta, margin=0.2)).backward()
    _assert_finite_grads(e)
    assert beta.grad is not None and torch.isfinite(beta.grad).all()


# --------------------------------------------------------------------------------------------------------------
# 9. CLEF as released (Nokia-Bell-Labs/ecg-foundation-model, lightning_contrastive.py)
# --------------------------------------------------------------------------------------------------------------


def ref_clef_published(z1, z2, risk, temperature, floor=0.2, missing=None) -> float:
    """Written from the released ContrastiveModel: _get_metadata_similarity, _meta_nce_loss,
    _similarity_alignment_loss, (nce + align) / 2; a loop per anchor."""
    n = len(z1)
    r = np.nan_to_num(np.asarray(risk, dtype=float), nan=0.0)
    diff = (r[:, None] - r[None, :]) ** 2
    diff = (diff - diff.min()) / (diff.max() - diff.min() + 1e-6)
    diff = (1 - floor) * diff + floor
    np.fill_diagonal(diff, 0.0)
    if missing is not None:
        diff = diff * np.exp(-np.outer(missing, missing))
    meta = np.tile(1 - diff, (2, 2))
    z = _l2n(np.concatenate([z1, z2]))
    s = z @ z.T
    terms = []
    for i in range(2 * n):
        w = np.exp(1 - meta[i]) / np.sum(np.exp(1 - meta[i]))  # softmax over the whole row
        others = [j for j in range(2 * n) if j != i]
        top = max(s[i, j] / temperature for j in others)
        p = (i + n) % (2 * n)
        pos = np.exp(s[i, p] / temperature - top)
        neg = sum(w[j] * np.exp(s[i, j] / temperature - top) for j in others if j != p)
        terms.append(-np.log(pos / (pos + neg + 1e-8)))
    nce = np.mean(terms)
    s_n = (s - s.min()) / (s.max() - s.min() + 1e-6)
    align = np.mean((s_n - meta) ** 2)
    return float((nce + align) / 2)


def _clef_published(z1, z2, risk, missing=None, **kw) -> float:
    return _scalar(losses.clef_published_loss(_t(z1), _t(z2), _t(risk), None if missing is None else _t(missing), **kw))


@pytest.mark.parametrize("seed,n,d", CASES)
def test_clef_published_loss_matches_reference(seed, n, d):
    rng = np.random.default_rng(2600 + seed)
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    risk = rng.uniform(0, 1, size=n)
    missing = rng.choice([0.0, 0.25, 0.5, 1.0], size=n)
    for tau in (*TEMPERATURES, 0.07):
        for floor in (0.2, 0.0, 0.5):
            _close(_clef_published(z1, z2, risk, temperature=tau, floor=floor), ref_clef_published(z1, z2, risk, tau, floor))
        _close(_clef_published(z1, z2, risk, missing, temperature=tau),
               ref_clef_published(z1, z2, risk, tau, missing=missing))


def test_clef_published_loss_missing_risks_count_as_zero():
    rng = np.random.default_rng(2650)
    z1, z2 = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    risk = np.array([0.1, np.nan, 0.4, np.nan, 0.9, 0.2])
    _close(_clef_published(z1, z2, risk, temperature=0.07), ref_clef_published(z1, z2, risk, 0.07))
    _close(_clef_published(z1, z2, risk, temperature=0.07),
           _clef_published(z1, z2, np.nan_to_num(risk, nan=0.0), temperature=0.07))
    # every risk missing (or all equal): every negative weighs the floor, the loss stays finite
    nothing = np.full(6, np.nan)
    got = _clef_published(z1, z2, nothing, temperature=0.07)
    assert np.isfinite(got)
    _close(got, ref_clef_published(z1, z2, nothing, 0.07))
    meta = _to_numpy(losses.clef_metadata_similarity(_t(nothing)))
    np.testing.assert_allclose(meta, np.eye(6) + (1 - np.eye(6)) * 0.8, atol=1e-12)


def test_clef_published_loss_differs_from_the_cross_view_variant_and_has_gradients():
    rng = np.random.default_rng(2660)
    z1, z2 = _t(rng.normal(size=(5, 6)), True), _t(rng.normal(size=(5, 6)), True)
    risk, missing = _t(rng.uniform(size=5)), _t(np.zeros(5))
    published = losses.clef_published_loss(z1, z2, risk, temperature=0.07)
    ours = losses.clef_loss(z1, z2, risk, missing, temperature=0.07)
    assert abs(_scalar(published) - _scalar(ours)) > 1e-3
    published.backward()
    _assert_finite_grads(z1, z2)


# --------------------------------------------------------------------------------------------------------------
# 10. Dade et al.: every view from one patient
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,m", [(0, 2), (1, 4), (2, 12)])
def test_nt_xent_when_every_sample_is_one_patient(seed, m):
    """All views positives of each other: each anchor's loss is the mean over its m - 1 positives."""
    z = np.random.default_rng(2700 + seed).normal(size=(m, 5))
    keys = np.zeros(m, dtype=np.int64)
    for tau in TEMPERATURES:
        _close(_scalar(losses.nt_xent_loss(_t(z), torch.tensor(keys), temperature=tau)), ref_nt_xent(z, keys, tau))
