"""Velocity autocorrelation function (VACF) and vibrational density of states (VDOS).

C(t) = sum_i w_i < v_i(t0) . v_i(t0 + t) >_t0, averaged over every time origin t0 (by FFT) and
weighted by the masses w_i = m_i (``mass_weighted``, the default: for a classical harmonic solid
every mode then carries the same weight, k_B T, whatever the masses) or w_i = 1.

VDOS(nu) = C(0) w(0) + 2 sum_{t > 0} C(t) w(t) cos(2 pi nu t), the cosine transform of the VACF
tapered by a Hann window w(t) that falls to zero at ``max_lag_fs`` (the resolution is about
1 / max_lag_fs), normalised so that its integral over nu >= 0 is 3N (N atoms analysed).

Units: time in fs, frequencies in THz (1 THz = 33.356 cm^-1 = 4.1357 meV); the VDOS in states/THz;
velocities in any unit (the result is normalised). Memory: the velocities, 24 bytes x n_atoms x
n_frames, plus FFT work for ``chunk_atoms`` atoms at a time (about 180 bytes x chunk_atoms x
n_frames: 56 MB at the default 32 atoms and 10,000 frames, measured).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from pesmith.errors import ConfigError, DataError

THZ_TO_CM1 = 33.35641  # 1 THz in cm^-1


@dataclass(frozen=True)
class VDOS:
    """Attributes: ``time_fs`` (n_lags,) and ``vacf`` (n_lags,), C(t)/C(0); ``frequency_THz``
    (n_freq,) and ``dos`` (n_freq,) in states/THz, integrating to ``3 * n_atoms``."""

    time_fs: np.ndarray
    vacf: np.ndarray
    frequency_THz: np.ndarray
    dos: np.ndarray
    n_atoms: int


def velocities_of(trajectory: Iterable[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    """Velocities (n_frames, n_atoms, 3) in ASE units and masses (n_atoms,) in amu of frames that
    carry momenta (written by an MD run, e.g. ASE .traj or extxyz with momenta)."""
    frames = []
    masses = None
    for index, atoms in enumerate(trajectory):
        if "momenta" not in atoms.arrays:
            raise DataError(f"frame {index} has no velocities: a VDOS needs a trajectory written with momenta (ASE .traj, extxyz with momenta)")
        if masses is None:
            masses = atoms.get_masses()
        elif len(atoms) != masses.size:
            raise DataError(f"frame {index} has {len(atoms)} atoms, frame 0 has {masses.size}: a VACF needs the same atoms throughout")
        frames.append(atoms.get_velocities())
    if masses is None:
        raise DataError("the trajectory has no frames")
    return np.stack(frames), masses


def vacf(velocities: np.ndarray, masses: np.ndarray | None = None, chunk_atoms: int = 32) -> np.ndarray:
    """Weighted VACF summed over atoms and components, averaged over time origins.

    Parameters
    ----------
    velocities : (n_frames, n_atoms, 3), any unit.
    masses : (n_atoms,) weights (amu); None: 1 for every atom.
    chunk_atoms : atoms transformed at a time.

    Returns
    -------
    (n_frames,) C(t) at lags 0 .. n_frames - 1 frames, in (velocity unit)^2 x mass unit.
    """
    n = velocities.shape[0]
    weights = np.ones(velocities.shape[1]) if masses is None else np.asarray(masses, float)
    total = np.zeros(n)
    for start in range(0, velocities.shape[1], chunk_atoms):
        v = velocities[:, start : start + chunk_atoms]  # (n, chunk, 3)
        spectrum = np.fft.rfft(v, n=2 * n, axis=0)  # (n + 1, chunk, 3)
        correlation = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * n, axis=0)[:n].sum(axis=2)  # (n, chunk)
        total += correlation @ weights[start : start + chunk_atoms]
    return total / (n - np.arange(n))


def vdos(
    velocities: np.ndarray | Iterable[Atoms],
    timestep_fs: float,
    masses: np.ndarray | None = None,
    mass_weighted: bool = True,
    max_lag_fs: float | None = None,
    oversample: int = 8,
) -> VDOS:
    """Vibrational density of states from the VACF.

    Parameters
    ----------
    velocities : (n_frames, n_atoms, 3) velocities, or frames with momenta.
    timestep_fs : time between frames, fs (the highest frequency is 500 / timestep_fs THz).
    masses : (n_atoms,) amu, with a velocity array; taken from the frames otherwise.
    mass_weighted : weight atoms by mass (see the module docstring); needs masses.
    max_lag_fs : VACF lags used, fs; None: half the trajectory.
    oversample : zero padding of the cosine transform (a finer frequency grid, not a finer
        resolution).

    Returns
    -------
    VDOS

    Raises
    ------
    ConfigError : timestep_fs <= 0, a max_lag_fs outside the trajectory, mass weighting without masses.
    DataError : frames without velocities.
    """
    if not isinstance(velocities, np.ndarray):
        velocities, masses = velocities_of(velocities)
    if not timestep_fs > 0:
        raise ConfigError(f"timestep_fs must be positive, got {timestep_fs}")
    if mass_weighted and masses is None:
        raise ConfigError("mass_weighted=True needs masses (amu) for a velocity array; pass masses or mass_weighted=False")
    n_frames, n_atoms, _ = velocities.shape
    n_lags = _n_lags(max_lag_fs, timestep_fs, n_frames)
    c = vacf(velocities, masses if mass_weighted else None)[:n_lags]  # (n_lags,)
    tapered = c * _hann_tail(n_lags)
    n_fft = 2 * n_lags * max(1, oversample)
    cosine = np.fft.rfft(tapered, n=n_fft).real  # sum_t C(t) w(t) cos(2 pi nu t)
    dos = 2.0 * cosine - tapered[0]  # (n_fft // 2 + 1,)
    frequency_THz = np.fft.rfftfreq(n_fft, d=timestep_fs) * 1000.0  # 1/fs -> THz
    dos *= 3 * n_atoms / np.trapezoid(dos, frequency_THz)
    return VDOS(np.arange(n_lags) * timestep_fs, c / c[0], frequency_THz, dos, n_atoms)


def _n_lags(max_lag_fs: float | None, timestep_fs: float, n_frames: int) -> int:
    if max_lag_fs is None:
        return max(2, n_frames // 2)
    n_lags = int(round(max_lag_fs / timestep_fs)) + 1
    if not 2 <= n_lags <= n_frames:
        raise ConfigError(f"max_lag_fs ({max_lag_fs}) must lie between one frame and the trajectory length ({(n_frames - 1) * timestep_fs} fs)")
    return n_lags


def _hann_tail(n_lags: int) -> np.ndarray:
    """(n_lags,) the falling half of a Hann window: 1 at lag 0, 0 at lag n_lags."""
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(n_lags) / n_lags))
