"""The MNAD-style memory bank (spec §3) against explicit hand computations, and its lifecycle inside SInt-A."""

from __future__ import annotations

import io
import math
from typing import List, Sequence, Tuple

import pytest
import torch

from CTSliceSynthesisLib.core.config import model_config
from CTSliceSynthesisLib.nets import MemoryBank, SliceInterpolator

Matrix = List[List[float]]


# --------------------------------------------------------------------------------------------------------------
# Tiny hand-made example (m = 3 items, d = 4) and plain-Python references following spec §3.2–3.4.


def unit(vector: Sequence[float]) -> List[float]:
    """``vector`` divided by its Euclidean norm."""
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


ITEMS: Matrix = [unit([1, 0.2, 0, 0.1]), unit([0.1, 1, 0.3, 0]), unit([0, 0.1, 0.2, 1])]
# Example A: P = 4 queries, nearest items (0, 0, 1, 1): item 2 has no query.
QUERIES_A: Matrix = [
    unit([1, 0.1, 0.05, 0]),
    unit([0.9, 0.2, 0, 0.85]),
    unit([0.2, 1, 0.1, 0.05]),
    unit([0.5, 0.7, 0.6, 0.2]),
]
# Example B: P = 5 queries, nearest items (0, 0, 1, 1, 2); query 1 (nearest item 0) scores higher on item 2 than
# item 2's own query 4, so "max over all positions" and "max over U_z" differ for item 2.
QUERIES_B: Matrix = [
    unit([1, 0.1, 0.05, 0]),
    unit([0.7, 0.15, 0.15, 0.72]),
    unit([0.2, 1, 0.1, 0.05]),
    unit([0.5, 0.7, 0.6, 0.2]),
    unit([0.5, 0.45, 0.25, 0.58]),
]


def dot(u: Sequence[float], v: Sequence[float]) -> float:
    """Inner product of two Python vectors."""
    return sum(a * b for a, b in zip(u, v))


def score_matrix(queries: Matrix, items: Matrix) -> Matrix:
    """``Σ[x][z] = <q_x, m_z>``."""
    return [[dot(q, m) for m in items] for q in queries]


def ranked_items(row: Sequence[float]) -> List[int]:
    """Item indices sorted by decreasing score."""
    return sorted(range(len(row)), key=lambda z: -row[z])


def reference_read(queries: Matrix, items: Matrix) -> Matrix:
    """Eq. 1–2: softmax over items of the scores, then the weighted sum of the items."""
    out = []
    for row in score_matrix(queries, items):
        exps = [math.exp(s) for s in row]
        total = sum(exps)
        out.append([sum(exps[z] / total * items[z][k] for z in range(len(items))) for k in range(len(items[0]))])
    return out


def reference_update(queries: Matrix, items: Matrix, scope: str = "all") -> Matrix:
    """Eq. 3–6. ``scope="all"`` is the code semantics (softmax and max over all positions, spec §3.3);
    ``scope="nearest"`` is the paper's literal eq. 3–4 (softmax and max over U_z only), used to show the example
    tells the two apart."""
    scores = score_matrix(queries, items)
    nearest = [ranked_items(row)[0] for row in scores]
    updated = []
    for z, item in enumerate(items):
        pool = range(len(queries)) if scope == "all" else [x for x in range(len(queries)) if nearest[x] == z]
        exps = {x: math.exp(scores[x][z]) for x in pool}
        total = sum(exps.values())
        weights = {x: e / total for x, e in exps.items()}
        largest = max(weights.values()) if weights else 1.0
        delta = [0.0] * len(item)
        for x, q in enumerate(queries):
            if nearest[x] == z:
                for k in range(len(item)):
                    delta[k] += weights[x] / largest * q[k]
        updated.append(unit([item[k] + delta[k] for k in range(len(item))]))
    return updated


def reference_losses(queries: Matrix, items: Matrix) -> Tuple[float, float, List[float]]:
    """Compactness (MSE to the nearest item), separateness (triplet, margin 1, eps 1e-6) and the hinge terms."""
    eps, squared, hinges = 1e-6, 0.0, []
    for q, row in zip(queries, score_matrix(queries, items)):
        first, second = (items[z] for z in ranked_items(row)[:2])
        squared += sum((a - b) ** 2 for a, b in zip(q, first))
        to_first = math.sqrt(sum((a - b + eps) ** 2 for a, b in zip(q, first)))
        to_second = math.sqrt(sum((a - b + eps) ** 2 for a, b in zip(q, second)))
        hinges.append(max(to_first - to_second + 1.0, 0.0))
    return squared / (len(queries) * len(queries[0])), sum(hinges) / len(hinges), hinges


def bank_with(items: Matrix) -> MemoryBank:
    """A 3×4 memory bank holding ``items``."""
    bank = MemoryBank(len(items), len(items[0]))
    bank.items.copy_(torch.tensor(items))
    return bank


def as_tensor(matrix: Matrix) -> torch.Tensor:
    """float32 tensor of a Python matrix."""
    return torch.tensor(matrix, dtype=torch.float32)


# --------------------------------------------------------------------------------------------------------------
# MemoryBank on its own.


def test_initial_items_are_positive_unit_rows(fixed_seed: int) -> None:
    """Spec §3.1: U[0,1) entries, each row L2-normalised; a buffer without gradient."""
    bank = MemoryBank(10, 192)
    assert bank.items.shape == (10, 192)
    assert bool((bank.items >= 0).all())
    torch.testing.assert_close(bank.items.norm(dim=1), torch.ones(10))
    assert not bank.items.requires_grad
    assert list(bank.parameters()) == []


def test_example_assignments() -> None:
    """Guard the hand examples themselves: nearest items as documented, no ties."""
    nearest_a = [ranked_items(row)[0] for row in score_matrix(QUERIES_A, ITEMS)]
    nearest_b = [ranked_items(row)[0] for row in score_matrix(QUERIES_B, ITEMS)]
    assert nearest_a == [0, 0, 1, 1]
    assert nearest_b == [0, 0, 1, 1, 2]
    column_two = [row[2] for row in score_matrix(QUERIES_B, ITEMS)]
    assert max(range(5), key=lambda x: column_two[x]) == 1  # column max is outside U_2 = {4}


def test_read_matches_hand_computation() -> None:
    """Read = softmax over the items (no temperature) times the items."""
    bank = bank_with(ITEMS)
    read = bank.read(as_tensor(QUERIES_A))
    torch.testing.assert_close(read, as_tensor(reference_read(QUERIES_A, ITEMS)), atol=1e-6, rtol=1e-5)


def test_read_has_no_gradient() -> None:
    """The attention weights are detached and the items are state: nothing in the read carries a gradient."""
    bank = bank_with(ITEMS)
    queries = as_tensor(QUERIES_A).requires_grad_(True)
    read = bank.read(queries)
    assert not read.requires_grad
    assert read.grad_fn is None


def test_update_matches_hand_computation() -> None:
    """Every item used; softmax over all positions, divided by its max over all positions (code semantics)."""
    bank = bank_with(ITEMS)
    bank.update(as_tensor(QUERIES_B))
    expected = reference_update(QUERIES_B, ITEMS, scope="all")
    torch.testing.assert_close(bank.items, as_tensor(expected), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bank.items.norm(dim=1), torch.ones(3))
    # The example is discriminating: the paper's U_z-only variant moves item 2 differently.
    paper_variant = as_tensor(reference_update(QUERIES_B, ITEMS, scope="nearest"))
    assert (paper_variant[2] - bank.items[2]).abs().max() > 1e-3


def test_update_unused_item_is_only_renormalised() -> None:
    """Item 2 has no nearest query: it is only L2-normalised (here from norm 0.5 back to 1)."""
    items = [ITEMS[0], ITEMS[1], [0.5 * v for v in ITEMS[2]]]
    assert [ranked_items(row)[0] for row in score_matrix(QUERIES_A, items)] == [0, 0, 1, 1]
    bank = bank_with(items)
    bank.update(as_tensor(QUERIES_A))
    expected = reference_update(QUERIES_A, items, scope="all")
    torch.testing.assert_close(bank.items, as_tensor(expected), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bank.items[2], as_tensor([ITEMS[2]])[0], atol=1e-6, rtol=1e-5)


def test_update_has_no_autograd_trace() -> None:
    """The update runs without gradient and leaves a plain (non-requires-grad) buffer."""
    bank = bank_with(ITEMS)
    bank.update(as_tensor(QUERIES_B).requires_grad_(True))
    assert not bank.items.requires_grad
    assert bank.items.grad_fn is None


def test_losses_match_hand_computation() -> None:
    """Compactness = MSE to the nearest item; separateness = mean hinge of the triplet margin."""
    bank = bank_with(ITEMS)
    compactness, separateness = bank.losses(as_tensor(QUERIES_B))
    expected_com, expected_sep, hinges = reference_losses(QUERIES_B, ITEMS)
    # The example exercises both branches of the hinge.
    assert any(h == 0.0 for h in hinges) and any(h > 0.0 for h in hinges)
    assert compactness.item() == pytest.approx(expected_com, rel=1e-5, abs=1e-7)
    assert separateness.item() == pytest.approx(expected_sep, rel=1e-5, abs=1e-7)


def test_loss_gradients_reach_queries_only() -> None:
    """d(compactness)/dq = 2 (q − m_nearest) / (P·d); the items receive nothing."""
    bank = bank_with(ITEMS)
    queries = as_tensor(QUERIES_B).requires_grad_(True)
    compactness, separateness = bank.losses(queries)
    (grad,) = torch.autograd.grad(compactness, queries)
    nearest = as_tensor([ITEMS[ranked_items(row)[0]] for row in score_matrix(QUERIES_B, ITEMS)])
    torch.testing.assert_close(grad, 2 * (queries.detach() - nearest) / queries.numel())
    assert separateness.requires_grad
    assert not bank.items.requires_grad and bank.items.grad is None


# --------------------------------------------------------------------------------------------------------------
# The memory inside SInt-A.


@pytest.fixture
def sint(fixed_seed: int) -> SliceInterpolator:
    """A lite SInt-A (C = 64, block 8) for r = 2."""
    return SliceInterpolator(model_config("lite", 2).sint, 2)


def pair(batch: int = 2, height: int = 16, width: int = 24) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two random slices ``(batch, 1, height, width)`` (uses the current torch seed)."""
    return torch.rand(batch, 1, height, width), torch.rand(batch, 1, height, width)


def test_sint_eval_mode_leaves_memory_unchanged(sint: SliceInterpolator) -> None:
    """Eval mode only reads: items unchanged, no memory losses."""
    sint.eval()
    before = sint.memory.items.clone()
    with torch.no_grad():
        out = sint(*pair())
    assert torch.equal(sint.memory.items, before)
    assert out.compactness is None and out.separateness is None


def test_sint_training_mode_updates_memory(sint: SliceInterpolator) -> None:
    """Training mode: the call returns both losses and moves the items (still unit rows, no gradient)."""
    sint.train()
    before = sint.memory.items.clone()
    out = sint(*pair())
    assert out.compactness is not None and out.separateness is not None
    assert out.compactness.requires_grad and out.separateness.requires_grad
    assert not torch.allclose(sint.memory.items, before)
    assert not sint.memory.items.requires_grad
    torch.testing.assert_close(sint.memory.items.norm(dim=1), torch.ones(10))


def test_sint_reads_memory_before_updating(sint: SliceInterpolator) -> None:
    """Spec §3.2: the read uses the memory as it was before this call's update, so a training call's output
    equals an eval call's output from the same state; the next training call sees the updated memory."""
    first, second = pair()
    sint.eval()
    with torch.no_grad():
        eval_out = sint(first, second).slices
    sint.train()
    with torch.no_grad():
        train_out = sint(first, second).slices
        again = sint(first, second).slices
    torch.testing.assert_close(train_out, eval_out, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(again, train_out, atol=1e-7, rtol=0)


def test_sint_update_sees_every_position(sint: SliceInterpolator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The update gets all ``Np·h'·w'`` unit queries of the call, and applies exactly the hand-checked rule."""
    seen: List[Tuple[torch.Tensor, torch.Tensor]] = []
    original = MemoryBank.update

    def recording(bank: MemoryBank, queries: torch.Tensor) -> None:
        seen.append((queries.detach().clone(), bank.items.clone()))
        original(bank, queries)

    monkeypatch.setattr(MemoryBank, "update", recording)
    sint.train()
    with torch.no_grad():
        sint(*pair(batch=3, height=16, width=24))
    assert len(seen) == 1
    queries, items_before = seen[0]
    assert queries.shape == (3 * 2 * 3, 64)
    torch.testing.assert_close(queries.norm(dim=1), torch.ones(18))
    expected = reference_update(queries.double().tolist(), items_before.double().tolist(), scope="all")
    torch.testing.assert_close(sint.memory.items, as_tensor(expected), atol=1e-5, rtol=1e-4)


def test_memory_survives_state_dict_round_trip(sint: SliceInterpolator) -> None:
    """The trained memory is saved with the weights and restored into a fresh network."""
    sint.train()
    with torch.no_grad():
        sint(*pair())
    buffer = io.BytesIO()
    torch.save(sint.state_dict(), buffer)
    buffer.seek(0)

    torch.manual_seed(999)
    fresh = SliceInterpolator(model_config("lite", 2).sint, 2)
    assert not torch.equal(fresh.memory.items, sint.memory.items)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.memory.items, sint.memory.items)

    sint.eval()
    fresh.eval()
    inputs = pair()
    with torch.no_grad():
        assert torch.equal(fresh(*inputs).slices, sint(*inputs).slices)
