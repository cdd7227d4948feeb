"""Real solid harmonics ``r^l Y_lm(r_hat)`` of Cartesian vectors, in torch.

Solid harmonics are polynomials in x, y, z, so they and their derivatives are finite
everywhere (also at r = 0), unlike angles. They are built with the recurrences of the
associated Legendre functions written for ``q_l^m = r^l P_l^m(z/r) / rho^m`` (rho the distance
from the z axis), times ``rho^m cos(m phi)`` and ``rho^m sin(m phi)`` from ``(x + i y)^m``.

Normalisation: ``Y_lm = r^-l S_lm`` are the orthonormal real spherical harmonics on the unit
sphere (integral of ``Y_lm Y_l'm'`` over the sphere = delta), in the order
``m = -l, ..., l`` within each l, and l = 0, 1, ... (column ``l^2 + l + m``), without the
Condon-Shortley phase.
"""

from __future__ import annotations

import math

import torch


def solid_harmonics(vectors: torch.Tensor, l_max: int) -> torch.Tensor:
    """``(n, (l_max + 1)^2)`` real solid harmonics ``r^l Y_lm`` of ``(n, 3)`` vectors (Å^l)."""
    x, y, z = vectors.unbind(-1)
    r2 = x * x + y * y + z * z
    # rho^m cos(m phi), rho^m sin(m phi): real and imaginary parts of (x + i y)^m
    cos_m, sin_m = [torch.ones_like(x)], [torch.zeros_like(x)]
    for m in range(1, l_max + 1):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(x * c - y * s)
        sin_m.append(x * s + y * c)
    # q[l][m] = r^l P_l^m(z/r) / rho^m, a polynomial in z and r^2
    q: list[list[torch.Tensor]] = [[torch.ones_like(x)]]
    for l in range(1, l_max + 1):
        row = []
        for m in range(l - 1):
            row.append(((2 * l - 1) * z * q[l - 1][m] - (l + m - 1) * r2 * q[l - 2][m]) / (l - m))
        row.append((2 * l - 1) * z * q[l - 1][l - 1])  # m = l - 1
        row.append((2 * l - 1) * q[l - 1][l - 1])  # m = l: (2l - 1)!!
        q.append(row)
    columns = []
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            k = abs(m)
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - k) / math.factorial(l + k))
            if m == 0:
                columns.append(norm * q[l][0])
            elif m > 0:
                columns.append(math.sqrt(2.0) * norm * q[l][k] * cos_m[k])
            else:
                columns.append(math.sqrt(2.0) * norm * q[l][k] * sin_m[k])
    return torch.stack(columns, dim=-1)
