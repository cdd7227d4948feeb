"""pesmith_example: an outside pesmith plugin (a radial-only Gaussian descriptor).

This module, named by the ``pesmith`` entry point, holds the hook only: it registers the class by
where it lives, so ``pesmith plugins`` lists it without importing ``pesmith_example.plugin``.
"""

from __future__ import annotations

from typing import Callable

from pesmith import hookimpl


@hookimpl
def pesmith_register_descriptors(register: Callable[..., None]) -> None:
    register(
        "example-radial",
        "pesmith_example.plugin:RadialGaussians",
        "Radial-only Gaussian descriptor: G[s, k] = sum_j exp(-eta (r_ij - mu_k)^2) f_c(r_ij).",
    )
