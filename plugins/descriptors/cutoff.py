"""Smooth cutoff functions of descriptors."""

from __future__ import annotations

import math

import torch


def cosine_cutoff(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``0.5 (cos(pi r / r_c) + 1)`` for ``r < r_c``, else 0 (r and r_c in Å)."""
    inside = distances < cutoff
    return torch.where(inside, 0.5 * (torch.cos(distances * (math.pi / cutoff)) + 1.0), torch.zeros_like(distances))
