"""MNAD-style memory bank at SInt's bottleneck (spec §3).

The items are state, not parameters: a persistent buffer (saved in ``state_dict`` and so in checkpoints, never
seen by the optimizer) that only changes through :meth:`MemoryBank.update`, without gradient, in training.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

SEPARATENESS_MARGIN = 1.0
TRIPLET_EPS = 1e-6


class MemoryBank(nn.Module):
    """``items`` unit vectors of dimension ``dim``, read by softmax attention and updated by their nearest queries."""

    items: torch.Tensor

    def __init__(self, items: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("items", F.normalize(torch.rand(items, dim), dim=1))

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``(P, m)`` of unit ``queries (P, d)`` with the (detached) items."""
        return queries @ self.items.detach().t()

    def read(self, queries: torch.Tensor) -> torch.Tensor:
        """Eq. 1–2: ``softmax(Q Mᵀ) M`` with the attention detached, so no gradient flows. ``(P, d) → (P, d)``."""
        weights = torch.softmax(self.scores(queries), dim=1).detach()
        return weights @ self.items.detach()

    def losses(self, queries: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Compactness (MSE to the nearest item) and separateness (triplet margin 1 against the second nearest).

        Both are means over positions (spec §3.4, code semantics); gradients reach ``queries`` only.
        """
        nearest_two = torch.topk(self.scores(queries), 2, dim=1).indices
        items = self.items.detach()
        first, second = items[nearest_two[:, 0]], items[nearest_two[:, 1]]
        compactness = F.mse_loss(queries, first)
        to_first = torch.linalg.vector_norm(queries - first + TRIPLET_EPS, dim=1)
        to_second = torch.linalg.vector_norm(queries - second + TRIPLET_EPS, dim=1)
        separateness = torch.clamp(to_first - to_second + SEPARATENESS_MARGIN, min=0).mean()
        return compactness, separateness

    @torch.no_grad()
    def update(self, queries: torch.Tensor) -> None:
        """Eq. 3–6 (code semantics): every item moves towards the queries whose nearest item it is.

        Weights are a softmax over all positions, divided by their maximum over all positions; items with no
        nearest query are only re-normalised.
        """
        scores = self.scores(queries.detach())
        nearest = scores.argmax(dim=1)
        weights = torch.softmax(scores, dim=0)
        weights = weights / weights.max(dim=0, keepdim=True).values
        own_weight = weights.gather(1, nearest[:, None])
        delta = torch.zeros_like(self.items)
        delta.index_add_(0, nearest, own_weight * queries.detach().to(delta.dtype))
        self.items.copy_(F.normalize(self.items + delta, dim=1))
