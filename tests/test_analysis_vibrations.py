"""pesmith.analysis.vibrations: the VDOS of harmonic crystals integrated with velocity Verlet."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from pesmith.analysis.vibrations import vacf, vdos
from pesmith.errors import ConfigError, DataError


def _verlet(x: np.ndarray, v: np.ndarray, acceleration, dt_fs: float, n_frames: int, every: int) -> np.ndarray:
    """Velocity Verlet; velocities every ``every`` steps: (n_frames, *x.shape)."""
    out = np.empty((n_frames, *x.shape))
    a = acceleration(x)
    for frame in range(n_frames):
        out[frame] = v
        for _ in range(every):
            v = v + 0.5 * dt_fs * a
            x = x + dt_fs * v
            a = acceleration(x)
            v = v + 0.5 * dt_fs * a
    return out


def _peak(result, lo: float, hi: float) -> float:
    inside = (result.frequency_THz > lo) & (result.frequency_THz < hi)
    return float(result.frequency_THz[inside][np.argmax(result.dos[inside])])


def test_einstein_crystal_peaks_at_its_two_frequencies_and_integrates_to_3N():
    """40 light atoms at omega = 0.1 rad/fs and 24 heavy ones at 0.04 rad/fs, each in its own well."""
    rng = np.random.default_rng(0)
    omega = np.array([0.1] * 40 + [0.04] * 24)[:, None]  # rad/fs
    masses = np.array([7.0] * 40 + [31.0] * 24)
    x0 = np.zeros((64, 3))
    v0 = rng.choice([-1.0, 1.0], (64, 3)) / np.sqrt(masses)[:, None]  # the same energy in every mode
    velocities = _verlet(x0, v0, lambda x: -(omega**2) * x, dt_fs=0.5, n_frames=4000, every=2)
    result = vdos(velocities, timestep_fs=1.0, masses=masses)
    for w in (0.1, 0.04):
        nu = w / (2 * np.pi) * 1000.0  # THz
        grid = result.frequency_THz[1] - result.frequency_THz[0]
        assert _peak(result, 0.7 * nu, 1.3 * nu) == pytest.approx(nu, abs=grid)
    assert np.trapezoid(result.dos, result.frequency_THz) == pytest.approx(3 * 64)
    # equal k_B T per mode: the two species' peaks hold 3 x 40 and 3 x 24 states
    light = result.frequency_THz > 10.0
    assert np.trapezoid(np.where(light, result.dos, 0), result.frequency_THz) == pytest.approx(120, rel=0.05)
    assert result.vacf[0] == 1.0


def test_harmonic_chain_vdos_peaks_at_its_band_edge():
    """A periodic 1-D chain (spring k/m = omega0^2): phonons omega(q) = 2 omega0 |sin(q a / 2)|,
    whose density of states diverges at the band edge 2 omega0."""
    rng = np.random.default_rng(1)
    n, omega0 = 200, 0.05  # atoms, rad/fs
    x0 = np.zeros((n, 1))
    # the same energy in every phonon (q = 2 pi k / n, k = 1 .. n/2), random phases
    q = 2 * np.pi * np.arange(1, n // 2 + 1) / n
    v0 = np.cos(np.outer(np.arange(n), q) + rng.uniform(0, 2 * np.pi, q.size)).sum(axis=1)[:, None]
    chain = lambda x: omega0**2 * (np.roll(x, 1, axis=0) + np.roll(x, -1, axis=0) - 2 * x)  # noqa: E731
    velocities = _verlet(x0, v0, chain, dt_fs=1.0, n_frames=16000, every=2)
    padded = np.concatenate([velocities, np.zeros((*velocities.shape[:2], 2))], axis=2)  # (frames, n, 3)
    result = vdos(padded, timestep_fs=2.0, mass_weighted=False, max_lag_fs=8000.0)
    edge = 2 * omega0 / (2 * np.pi) * 1000.0  # THz
    assert _peak(result, 0.5 * edge, 1.5 * edge) == pytest.approx(edge, rel=0.02)
    assert result.dos[result.frequency_THz > 1.1 * edge].max() < 0.05 * result.dos.max()


def test_vacf_equals_direct_average_and_frames_need_velocities():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(30, 3, 3))
    masses = np.array([1.0, 2.0, 3.0])
    direct = [sum(masses[i] * np.mean(np.sum(v[m:, i] * v[: 30 - m, i], axis=1)) for i in range(3)) for m in range(30)]
    np.testing.assert_allclose(vacf(v, masses, chunk_atoms=2), direct, rtol=1e-10)
    with pytest.raises(DataError, match="no velocities"):
        vdos([Atoms("Li", cell=[3, 3, 3], pbc=True)], timestep_fs=1.0)
    with pytest.raises(ConfigError, match="max_lag_fs"):
        vdos(v, timestep_fs=1.0, masses=masses, max_lag_fs=100.0)
    frames = []
    for k in range(20):
        atoms = Atoms("Li2", positions=[[0, 0, 0], [1.5, 0, 0]], cell=[3, 3, 3], pbc=True)
        atoms.set_velocities(v[k, :2])
        frames.append(atoms)
    from_frames = vdos(frames, timestep_fs=1.0)
    assert np.trapezoid(from_frames.dos, from_frames.frequency_THz) == pytest.approx(6.0)
