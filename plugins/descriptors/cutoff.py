"""Smooth cutoff functions of descriptors."""

from __future__ import annotations

import math

import torch


def cosine_cutoff(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``0.5 (cos(pi r / r_c) + 1)`` for ``r < r_c``, else 0 (r and r_c in Å)."""
    inside = distances < cutoff
    return torch.where(inside, 0.5 * (torch.cos(distances * (math.pi / cutoff)) + 1.0), torch.zeros_like(distances))


def cosine_cutoff_derivative(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``d/dr`` of :func:`cosine_cutoff`: ``-(pi / 2 r_c) sin(pi r / r_c)`` for ``r < r_c``, else 0 (1/Å)."""
    inside = distances < cutoff
    slope = -0.5 * (math.pi / cutoff) * torch.sin(distances * (math.pi / cutoff))
    return torch.where(inside, slope, torch.zeros_like(distances))
