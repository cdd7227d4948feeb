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


def transition_cutoff(distances: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """gap_fit's switch (QUIP's ``coordination_function``): 1 below ``r_c - d``,
    ``(cos(pi (r - r_c + d) / d) + 1) / 2`` up to ``r_c``, 0 beyond (r, r_c and d in Å)."""
    x = ((distances - (cutoff - width)) / width).clamp(0.0, 1.0)
    return torch.where(distances < cutoff, 0.5 * (torch.cos(math.pi * x) + 1.0), torch.zeros_like(distances))


def transition_cutoff_derivative(distances: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """``d/dr`` of :func:`transition_cutoff`: ``-(pi / 2 d) sin(pi (r - r_c + d) / d)`` inside the
    switch, else 0 (1/Å)."""
    start = cutoff - width
    x = ((distances - start) / width).clamp(0.0, 1.0)
    moving = (distances < cutoff) & (distances > start)
    return torch.where(moving, -0.5 * math.pi / width * torch.sin(math.pi * x), torch.zeros_like(distances))
