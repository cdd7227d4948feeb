"""Mean squared displacements, diffusion coefficients and Arrhenius fits.

MSD_a(t) = < |r_i(t0 + t) - r_i(t0)|^2 >, averaged over the atoms i of species a and over every
time origin t0 (computed by FFT, O(n_frames log n_frames) per atom). Positions are unwrapped from
wrapped frames by minimum-image displacements between consecutive frames, so frames must be
stored often enough that no atom moves half a cell between two of them.

D = slope / (2 dim) of a least-squares line through MSD(t) over the fit window [t_start, t_end]
(the diffusive regime: after the ballistic start, before the noisy end). Its error bar is the
standard error of the mean over blocks: the trajectory is cut into ``n_blocks`` contiguous
blocks, D is fitted in each over the same window, and D_err = std(D_block, ddof=1) /
sqrt(n_blocks). The default window is [0.1, 0.5] x the length of one block.

Arrhenius: ln D = ln D0 - Ea / (k_B T), a weighted linear fit of ln D against 1/T (weights from
D_err / D when given); Ea and D0 carry the standard errors from the fit's covariance.

Units: Å, fs, K, eV; D in Å^2/fs (1 Å^2/fs = 0.1 cm^2/s, :data:`A2_PER_FS_TO_CM2_PER_S`).
Memory: the unwrapped positions of the selected atoms, 24 bytes x n_atoms x n_frames (240 MB for
1,000 atoms and 10,000 frames; pass ``species`` to keep only those atoms), plus FFT work arrays
for ``chunk_atoms`` atoms at a time (about 220 bytes x chunk_atoms x n_frames: 70 MB at the
default 32 atoms and 10,000 frames, measured) and the per-atom MSD of one species (8 bytes x
n_atoms of it x n_frames).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.data import chemical_symbols

from pesmith.errors import ConfigError, DataError

A2_PER_FS_TO_CM2_PER_S = 0.1  # 1 Å^2/fs = 1e-16 cm^2 / 1e-15 s
K_B = units.kB  # eV/K


@dataclass(frozen=True)
class Diffusion:
    """Diffusion coefficient of one species.

    Attributes
    ----------
    species : chemical symbol.
    D : Å^2/fs, from the whole trajectory.
    D_err : Å^2/fs, standard error of the mean over blocks.
    fit_fs : (t_start, t_end) of the fit window, fs.
    block_D : (n_blocks,) D of each block, Å^2/fs.
    time_fs : (n_lags,) lag times, fs.
    msd : (n_lags,) MSD of the whole trajectory, Å^2.
    """

    species: str
    D: float
    D_err: float
    fit_fs: tuple[float, float]
    block_D: np.ndarray
    time_fs: np.ndarray
    msd: np.ndarray


@dataclass(frozen=True)
class Arrhenius:
    """D(T) = D0 exp(-Ea / (k_B T)) with standard errors; ``covariance`` is that of
    (-Ea / k_B, ln D0), in K^2, K and 1."""

    Ea_eV: float
    Ea_err_eV: float
    D0: float
    D0_err: float
    covariance: np.ndarray

    def D(self, temperature_K: float | np.ndarray) -> float | np.ndarray:
        """Fitted D at ``temperature_K`` (K), in the unit of the D given to the fit."""
        return self.D0 * np.exp(-self.Ea_eV / (K_B * np.asarray(temperature_K)))


def unwrap(trajectory: Iterable[Atoms], species: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped positions of a (wrapped or unwrapped) trajectory.

    Parameters
    ----------
    trajectory : frames with a cell each (periodic directions from ``atoms.pbc``); iterated once.
    species : keep only atoms of these chemical symbols; None keeps all.

    Returns
    -------
    positions : (n_frames, n_selected, 3), Å, continuous across periodic boundaries: frame 0 as
        given, then each frame's minimum-image displacement from the previous one added.
    numbers : (n_selected,) atomic numbers.

    Raises
    ------
    DataError : no frames, or a frame whose atoms differ from the first frame's.
    """
    wanted = None if species is None else set(species)
    frames: list[np.ndarray] = []
    previous = keep = numbers = None
    for index, atoms in enumerate(trajectory):
        if keep is None:
            keep = np.array([wanted is None or s in wanted for s in atoms.get_chemical_symbols()])
            numbers = atoms.numbers[keep]
            frames.append(atoms.positions[keep].copy())
        elif len(atoms) != keep.size or np.any(atoms.numbers[keep] != numbers):
            raise DataError(f"frame {index} has other atoms than frame 0: an MSD needs the same atoms in the same order in every frame")
        else:
            frames.append(frames[-1] + _minimum_image(atoms.positions[keep] - previous, atoms.cell[:], atoms.pbc))
        previous = atoms.positions[keep]
    if keep is None:
        raise DataError("the trajectory has no frames")
    if not keep.any():
        raise DataError(f"no atom of species {sorted(wanted)} in the trajectory")
    return np.stack(frames), numbers


def msd(positions: np.ndarray, chunk_atoms: int = 32) -> np.ndarray:
    """MSD of each atom averaged over all time origins, by FFT.

    Parameters
    ----------
    positions : (n_frames, n_atoms, 3) unwrapped positions, Å.
    chunk_atoms : atoms transformed at a time (bounds the FFT work memory).

    Returns
    -------
    (n_frames, n_atoms) MSD at lags 0 .. n_frames - 1 frames, Å^2.
    """
    n_frames, n_atoms, _ = positions.shape
    out = np.empty((n_frames, n_atoms))
    for start in range(0, n_atoms, chunk_atoms):
        out[:, start : start + chunk_atoms] = _msd_fft(positions[:, start : start + chunk_atoms])
    return out


def diffusion_coefficients(
    trajectory: Iterable[Atoms] | np.ndarray,
    timestep_fs: float,
    numbers: np.ndarray | None = None,
    fit_fs: tuple[float, float] | None = None,
    n_blocks: int = 5,
    species: Iterable[str] | None = None,
    dim: int = 3,
    remove_drift: bool = False,
    weights: Literal["equal", "inverse_time"] = "equal",
) -> dict[str, Diffusion]:
    """Diffusion coefficient of each species from the MSD, with a block-average error bar.

    Parameters
    ----------
    trajectory : frames (unwrapped here with :func:`unwrap`), or already unwrapped positions
        (n_frames, n_atoms, 3) in Å together with ``numbers``.
    timestep_fs : time between two stored frames, fs.
    numbers : (n_atoms,) atomic numbers; only with a positions array.
    fit_fs : (t_start, t_end) of the linear fit, fs; None: [0.1, 0.5] x the length of one block.
    n_blocks : blocks for the error bar (>= 2).
    species : analyse only these chemical symbols; None: every species. With frames and without
        ``remove_drift``, only these atoms are kept in memory.
    dim : dimensions of the motion (D = slope / (2 dim)); the MSD sums all 3 Cartesian components.
    remove_drift : subtract from each species' displacements the unweighted mean displacement of
        the other species (the host framework, as pymatgen-analysis-diffusion does); of all atoms
        when there is only one species.
    weights : least-squares weights of the MSD points: ``"equal"``, or ``"inverse_time"`` (1/t,
        as pymatgen-analysis-diffusion's ``smoothed="max"``: the MSD's variance grows with t).

    Returns
    -------
    {symbol: Diffusion}

    Raises
    ------
    ConfigError : a fit window outside one block, n_blocks < 2, timestep_fs <= 0.
    DataError : too few frames, atoms changing between frames.
    """
    wanted = None if species is None else set(species)
    positions, numbers = _positions(trajectory, numbers, None if remove_drift else wanted)
    if weights not in ("equal", "inverse_time"):
        raise ConfigError(f"weights must be 'equal' or 'inverse_time', got {weights!r}")
    block_frames = positions.shape[0] // n_blocks
    lags = _fit_lags(fit_fs, timestep_fs, block_frames, n_blocks)
    if weights == "inverse_time" and lags[0] == 0:
        raise ConfigError(f"weights='inverse_time' needs a fit window starting after t = 0, got fit_fs = {fit_fs}")
    out = {}
    for z in sorted(set(numbers.tolist())):
        symbol = chemical_symbols[z]
        if wanted is not None and symbol not in wanted:
            continue
        selected = positions[:, numbers == z]
        if remove_drift:
            host = positions[:, numbers != z] if np.any(numbers != z) else positions
            selected = selected - (host - host[0]).mean(axis=1, keepdims=True)
        whole = msd(selected).mean(axis=1)  # (n_frames,)
        blocks = np.array([_slope(msd(selected[k * block_frames : (k + 1) * block_frames]).mean(axis=1), lags, timestep_fs, weights) for k in range(n_blocks)])
        D = _slope(whole, lags, timestep_fs, weights) / (2 * dim)
        out[symbol] = Diffusion(
            symbol, float(D), float(blocks.std(ddof=1) / (2 * dim) / np.sqrt(n_blocks)), (lags[0] * timestep_fs, lags[-1] * timestep_fs),
            blocks / (2 * dim), np.arange(whole.size) * timestep_fs, whole,
        )
    return out


def arrhenius(temperature_K: Iterable[float], D: Iterable[float], D_err: Iterable[float] | None = None) -> Arrhenius:
    """Fit D(T) = D0 exp(-Ea / (k_B T)): weighted least squares of ln D against 1/T.

    Parameters
    ----------
    temperature_K : (n,) temperatures, K; at least 2 different ones.
    D : (n,) diffusion coefficients (any unit; D0 comes out in it).
    D_err : (n,) standard errors of D; the weights are (D / D_err)^2 and the covariance is taken
        as absolute. None: equal weights and the covariance scaled by the residuals (needs at
        least 3 temperatures for an error bar; with 2 the errors are nan).

    Returns
    -------
    Arrhenius

    Raises
    ------
    DataError : fewer than 2 temperatures, lengths that differ, D <= 0 or T <= 0.
    """
    T, D = np.asarray(temperature_K, float), np.asarray(D, float)
    if T.ndim != 1 or T.shape != D.shape or np.unique(T).size < 2:
        raise DataError(f"an Arrhenius fit needs D at 2 or more different temperatures, got T = {T.tolist()} and D = {D.tolist()}")
    if np.any(T <= 0) or np.any(D <= 0):
        raise DataError(f"temperatures and D must be positive, got T = {T.tolist()} K and D = {D.tolist()}")
    x, y = 1.0 / T, np.log(D)
    sigma = np.ones_like(y) if D_err is None else np.asarray(D_err, float) / D  # (n,) error of ln D
    if sigma.shape != y.shape or np.any(sigma <= 0):
        raise DataError(f"D_err must be positive with one value per temperature, got {np.asarray(D_err).tolist()}")
    design = np.stack([x, np.ones_like(x)], axis=1) / sigma[:, None]  # (n, 2)
    coef, *_ = np.linalg.lstsq(design, y / sigma, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    if D_err is None:
        dof = y.size - 2
        residual = float(np.sum((y - np.stack([x, np.ones_like(x)], axis=1) @ coef) ** 2))
        cov = cov * (residual / dof) if dof > 0 else np.full((2, 2), np.nan)
    slope, intercept = coef
    D0 = float(np.exp(intercept))
    return Arrhenius(float(-slope * K_B), float(np.sqrt(cov[0, 0]) * K_B), D0, float(D0 * np.sqrt(cov[1, 1])), cov)


def _positions(trajectory, numbers, species: set[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped positions (n_frames, n_atoms, 3) Å and numbers; frames keep only ``species``."""
    if isinstance(trajectory, np.ndarray):
        if numbers is None or trajectory.ndim != 3 or trajectory.shape[1:] != (len(numbers), 3):
            raise DataError(f"a positions array must be (n_frames, n_atoms, 3) with numbers (n_atoms,), got {trajectory.shape} and {None if numbers is None else len(numbers)} numbers")
        return np.asarray(trajectory, float), np.asarray(numbers)
    return unwrap(trajectory, species)


def _fit_lags(fit_fs, timestep_fs: float, block_frames: int, n_blocks: int) -> np.ndarray:
    """Lag indices (frames) inside the fit window, checked to fit in one block."""
    if not timestep_fs > 0:
        raise ConfigError(f"timestep_fs must be positive, got {timestep_fs}")
    if n_blocks < 2:
        raise ConfigError(f"n_blocks must be at least 2 for an error bar, got {n_blocks}")
    block_fs = (block_frames - 1) * timestep_fs
    start, end = (0.1 * block_fs, 0.5 * block_fs) if fit_fs is None else fit_fs
    lags = np.arange(int(np.ceil(start / timestep_fs - 1e-9)), int(np.floor(end / timestep_fs + 1e-9)) + 1)
    if lags.size < 2 or start < 0 or lags[-1] >= block_frames:
        raise ConfigError(
            f"fit window {start:g}-{end:g} fs must hold 2 or more frames within one of the {n_blocks} blocks "
            f"(each {block_fs:g} fs, {block_frames} frames): give a shorter fit_fs, fewer n_blocks or a longer trajectory"
        )
    return lags


def _slope(msd_mean: np.ndarray, lags: np.ndarray, timestep_fs: float, weights: str) -> float:
    """Least-squares slope of MSD (Å^2) against time (fs) over ``lags``; ``"inverse_time"``
    weighs each squared residual by 1/t."""
    t = lags * timestep_fs
    w = None if weights == "equal" else 1.0 / np.sqrt(t)  # polyfit's w multiplies the residuals
    return float(np.polyfit(t, msd_mean[lags], 1, w=w)[0])


def _minimum_image(step: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Displacements (n, 3) in Å mapped to their shortest periodic image along periodic axes."""
    if not np.any(pbc):
        return step
    fractional = np.linalg.solve(cell.T, step.T).T  # (n, 3)
    fractional[:, pbc] -= np.round(fractional[:, pbc])
    return fractional @ cell


def _msd_fft(positions: np.ndarray) -> np.ndarray:
    """MSD at every lag for (n_frames, n_atoms, 3) positions: (n_frames, n_atoms), Å^2.

    MSD(m) = S1(m) - 2 S2(m) with S1(m) = sum_t (|r_t|^2 + |r_{t+m}|^2) / (n - m) and
    S2(m) = sum_t r_t . r_{t+m} / (n - m), the latter by FFT (Kneller et al., Comput. Phys.
    Commun. 91, 191 (1995), doi:10.1016/0010-4655(95)00048-K).
    """
    n = positions.shape[0]
    positions = positions - positions.mean(axis=0)  # the MSD ignores a constant shift; this keeps S1 - 2 S2 accurate
    squared = np.einsum("tad,tad->ta", positions, positions)  # (n, atoms)
    cumulative = np.concatenate([np.zeros((1, squared.shape[1])), np.cumsum(squared, axis=0)])  # (n + 1, atoms)
    m = np.arange(n)
    s1 = (cumulative[n - m] + cumulative[n] - cumulative[m]) / (n - m)[:, None]
    spectrum = np.fft.rfft(positions, n=2 * n, axis=0)  # (n + 1, atoms, 3)
    s2 = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * n, axis=0)[:n].sum(axis=2) / (n - m)[:, None]
    return s1 - 2.0 * s2
