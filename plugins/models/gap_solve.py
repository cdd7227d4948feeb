"""The GAP solve, for one GAP or for the GAP terms of a potential fitted jointly.

A sum of independent GPs is a GP whose sparse set is the union of the terms' sparse sets: its
``K_MM`` is block diagonal (each term's own kernel, ``delta`` and jitter) and the rows of its
``K_NM`` are the terms' rows side by side (each term's features of the same structures). The
projected-process solution

    alpha = (K_MM + K_MN L^-1 K_NM)^-1 K_MN L^-1 y

is then one least-squares problem ``[L^-1/2 K_NM; U] alpha = [L^-1/2 y; 0]`` with
``U^T U = K_MM + jitter`` (block diagonal), solved by the blocked QR of :func:`solve`: memory
grows with ``M x (M + one block of observations)``, ``M`` the total number of sparse points.

Each term keeps a posterior factor for its own uncertainty: the upper ``R_t`` with
``R_t^T R_t = Sigma_tt^-1``, ``Sigma_tt`` the term's diagonal block of the joint posterior
covariance (the Schur complement, the trailing block of a QR of ``R`` with the term's columns
last). A potential adds the terms' variances, neglecting the posterior covariance between terms.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

from pesmith.errors import DataError
from pesmith.features import FeatureSet
from pesmith.loss import evaluate
from pesmith.memory import peak_rss_gb
from pesmith.model import FitSummary
from pesmith.structures import DTYPE
from pesmith.terms import aligned_parts, evaluate_terms

from .gap_fit import Sigmas, part_observations, describe_sigmas, structure_sigmas

if TYPE_CHECKING:
    from .gap import GAPModel, GAPSettings

logger = logging.getLogger(__name__)

FOLD_ROWS = 1024  # observation rows gathered (at least n_sparse) before they are folded into the QR factor


def fit_jointly(
    models: Sequence["GAPModel"],
    train_sets: Sequence[FeatureSet],
    validations: Sequence[FeatureSet | None],
    settings: "GAPSettings",
    term_settings: Sequence["GAPSettings"],
) -> FitSummary:
    """Choose each model's sparse points (its ``term_settings``: ``n_sparse``,
    ``sparse_method``, ``jitter``), then solve for all of them at once on the energies, forces
    and virials of the structures of ``train_sets`` (one feature set per model), with the
    noise of ``settings`` (module docstring). One model is the plain GAP fit.

    Raises
    ------
    DataError
        As :meth:`GAPModel.fit`: too few environments for ``n_sparse``, an unknown config_type,
        or a singular system (the message says which of ``jitter`` and the sigmas to raise).
    """
    started = time.perf_counter()
    sigmas = structure_sigmas(train_sets[0], settings)
    factors = [model.prepare_sparse_set(data, own) for model, data, own in zip(models, train_sets, term_settings)]
    sizes = [model.n_sparse for model in models]
    m = sum(sizes)
    with torch.no_grad():
        # R_aug: the R of the QR factorisation of the stacked [A | b] rows seen so far, (M+1, M+1).
        r_aug = torch.zeros(m + 1, m + 1, dtype=DTYPE)
        r_aug[:m, :m] = torch.block_diag(*[factor.T for factor in factors]) if m else r_aug[:0, :0]
        pending: list[torch.Tensor] = []
        n_rows = {"energy": 0, "force": 0, "virial": 0}
        for kind, rows, targets in joint_observations(models, train_sets, sigmas):
            pending.append(torch.cat([rows, targets[:, None]], dim=1))
            n_rows[kind] += rows.shape[0]
            if sum(p.shape[0] for p in pending) >= max(m, FOLD_ROWS):
                r_aug = torch.linalg.qr(torch.cat([r_aug, *pending]), mode="r")[1]
                pending = []
        if pending:
            r_aug = torch.linalg.qr(torch.cat([r_aug, *pending]), mode="r")[1]
        if n_rows["virial"] == 0 and settings.fits_virials:
            logger.warning("virial sigmas are set but no training structure has a stress label and a 3D cell: no virials fitted")
        r_factor = r_aug[:m, :m]
        diagonal = r_factor.diagonal().abs()
        alpha = torch.linalg.solve_triangular(r_factor, r_aug[:m, m:], upper=True)[:, 0]
        if not bool(torch.isfinite(alpha).all()) or float(diagonal.min()) <= torch.finfo(DTYPE).eps * float(diagonal.max()):
            raise DataError(
                f"the GAP system of {m} sparse points and {sum(n_rows.values())} observations is singular:"
                f" raise training.jitter (now {settings.jitter:g}) or training.sigma_energy"
                f" (now {settings.sigma_energy:g} eV/atom) / training.sigma_force (now {settings.sigma_force} eV/Å)"
                f" / training.sigma_virial (now {settings.sigma_virial} eV/atom) / training.config_type_sigma"
            )
        offsets = [sum(sizes[:t]) for t in range(len(models) + 1)]
        for t, (model, factor) in enumerate(zip(models, factors)):
            own = slice(offsets[t], offsets[t + 1])
            model.alpha = alpha[own].clone()
            model.kmm_factor = factor
            model.posterior_factor = r_factor if len(models) == 1 else marginal_factor(r_factor, own)
    info: dict[str, Any] = {}
    sparse = [
        {"n_sparse": {s: int((model.sparse_species == k).sum()) for k, s in enumerate(model.species)}, "sparse_method": own.sparse_method}
        for model, own in zip(models, term_settings)
    ]
    info |= sparse[0] if len(models) == 1 else {"terms": sparse}
    info |= {
        "n_observations": n_rows,
        **describe_sigmas(settings),
        "objective": float(r_aug[m, m] ** 2),
        "fit_s": time.perf_counter() - started,
        "peak_rss_gb": peak_rss_gb(),  # featurization included
    }
    info["train"] = _evaluate(models, train_sets, settings)
    if validations[0] is not None and validations[0].n_structures:
        info["validation"] = _evaluate(models, validations, settings)
    return FitSummary(info=info)


def _evaluate(models: Sequence["GAPModel"], sets: Sequence[FeatureSet], settings: "GAPSettings") -> dict[str, float]:
    return evaluate(models[0], sets[0], settings) if len(models) == 1 else evaluate_terms(models, sets, settings)


def marginal_factor(r_factor: torch.Tensor, own: slice) -> torch.Tensor:
    """Upper ``R_t`` ``(M_t, M_t)`` with ``R_t^T R_t = Sigma_tt^-1``, the inverse of the diagonal
    block ``own`` of ``Sigma = (R^T R)^-1``: the trailing block of the QR of ``R`` with the
    columns of ``own`` moved last (the Schur complement of the precision ``R^T R``)."""
    m = r_factor.shape[0]
    columns = torch.arange(m)
    mine = columns[own]
    others = columns[(columns < own.start) | (columns >= own.stop)]
    r = torch.linalg.qr(r_factor[:, torch.cat([others, mine])], mode="r")[1]
    return r[-mine.numel() :, -mine.numel() :].clone()


def joint_observations(
    models: Sequence["GAPModel"], sets: Sequence[FeatureSet], sigmas: Sigmas
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(kind, weighted rows (r, sum_t M_t), weighted targets (r,)) blocks of the energies,
    forces and virials of the structures of ``sets`` (one feature set per model): the terms'
    rows (:func:`.gap_fit.part_observations`) side by side, each divided by its noise."""
    blocks = [model._block_edges() for model in models]
    limited = [dataclasses.replace(data, chunk_edges=min(data.chunk_edges, block)) for data, block in zip(sets, blocks)]
    start = 0
    for parts in aligned_parts(limited):
        rows = torch.arange(start, start + parts[0].n_structures)
        start += parts[0].n_structures
        own = Sigmas(sigmas.energy[rows], sigmas.force[rows], sigmas.virial[rows])
        streams = [part_observations(model, part, own, block) for model, part, block in zip(models, parts, blocks)]
        for observed in zip(*streams, strict=True):
            kinds = {kind for kind, _, _ in observed}
            assert len(kinds) == 1, kinds  # every term sees the same structures, labels and sigmas
            yield observed[0][0], torch.cat([rows for _, rows, _ in observed], dim=1), observed[0][2]
