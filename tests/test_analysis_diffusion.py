"""pesmith.analysis.diffusion: random walks with a known D, unwrapping, Arrhenius fits."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from pesmith.analysis.diffusion import K_B, arrhenius, diffusion_coefficients, msd, unwrap
from pesmith.errors import ConfigError, DataError


def _random_walk(n_frames: int, n_atoms: int, D: float, timestep_fs: float, seed: int) -> np.ndarray:
    """Gaussian steps of variance 2 D dt per Cartesian component: (n_frames, n_atoms, 3), Å."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, np.sqrt(2 * D * timestep_fs), (n_frames - 1, n_atoms, 3))
    return np.concatenate([np.zeros((1, n_atoms, 3)), np.cumsum(steps, axis=0)]) + rng.uniform(0, 10, (1, n_atoms, 3))


def _wrapped_frames(positions: np.ndarray, cell: np.ndarray, symbols: str) -> list[Atoms]:
    frames = []
    for r in positions:
        atoms = Atoms(symbols, positions=r, cell=cell, pbc=True)
        atoms.wrap()
        frames.append(atoms)
    return frames


def test_msd_fft_equals_direct_average_over_time_origins():
    positions = _random_walk(50, 4, D=0.01, timestep_fs=2.0, seed=1)
    direct = np.array([[np.mean(np.sum((positions[m:, a] - positions[: 50 - m, a]) ** 2, axis=1)) for a in range(4)] for m in range(50)])
    np.testing.assert_allclose(msd(positions, chunk_atoms=3), direct, rtol=1e-10, atol=1e-12)


def test_random_walk_gives_its_D_within_2_percent():
    D_true = 1e-3  # Å^2/fs = 1e-4 cm^2/s
    positions = _random_walk(2000, 500, D_true, timestep_fs=10.0, seed=7)
    numbers = np.full(500, 3)
    result = diffusion_coefficients(positions, timestep_fs=10.0, numbers=numbers)["Li"]
    assert result.D == pytest.approx(D_true, rel=0.02)
    assert 0 < result.D_err < 0.02 * D_true
    assert abs(result.D - D_true) < 4 * result.D_err  # the error bar is honest
    assert result.fit_fs == pytest.approx((0.1 * 399 * 10.0, 0.5 * 399 * 10.0), abs=10.0)


def test_unwrap_recovers_the_walk_from_wrapped_frames_in_a_triclinic_cell():
    positions = _random_walk(300, 6, D=5e-3, timestep_fs=5.0, seed=3)  # about 20 Å in all, 0.2 Å per frame
    cell = np.array([[6.0, 0, 0], [1.5, 5.5, 0], [0.7, 0.9, 6.2]])
    frames = _wrapped_frames(positions, cell, "Li4O2")
    unwrapped, numbers = unwrap(frames)
    np.testing.assert_allclose(unwrapped - unwrapped[0], positions - positions[0], atol=1e-9)
    assert numbers.tolist() == [3] * 4 + [8] * 2
    only_o, numbers = unwrap(frames, species=["O"])
    assert only_o.shape == (300, 2, 3) and numbers.tolist() == [8, 8]


def test_species_separately_from_wrapped_frames():
    rng = np.random.default_rng(0)
    n = 1500
    li = _random_walk(n, 40, D=2e-3, timestep_fs=10.0, seed=11)
    o = _random_walk(n, 20, D=2e-4, timestep_fs=10.0, seed=12)
    frames = _wrapped_frames(np.concatenate([li, o], axis=1), np.diag(rng.uniform(9, 11, 3)), "Li40O20")
    result = diffusion_coefficients(frames, timestep_fs=10.0, n_blocks=4)
    assert set(result) == {"Li", "O"}
    numbers = np.array([3] * 40 + [8] * 20)
    direct = diffusion_coefficients(np.concatenate([li, o], axis=1), timestep_fs=10.0, numbers=numbers, n_blocks=4)
    for symbol, D_true in [("Li", 2e-3), ("O", 2e-4)]:
        assert result[symbol].D == pytest.approx(direct[symbol].D, rel=1e-9)  # wrapping changes nothing
        assert result[symbol].D_err == pytest.approx(direct[symbol].D_err, rel=1e-9)
        assert result[symbol].D == pytest.approx(D_true, rel=0.25)  # 40 and 20 atoms: a loose check
    assert result["Li"].msd.shape == (n,) and result["Li"].time_fs[1] == 10.0
    only_o = diffusion_coefficients(frames, timestep_fs=10.0, n_blocks=4, species=["O"])  # keeps only O in memory
    assert set(only_o) == {"O"} and only_o["O"].D == pytest.approx(result["O"].D, rel=1e-12)


def test_bad_inputs_are_clear_errors():
    positions = _random_walk(100, 2, D=1e-3, timestep_fs=1.0, seed=0)
    with pytest.raises(ConfigError, match="fit window"):
        diffusion_coefficients(positions, 1.0, numbers=np.array([3, 3]), fit_fs=(10.0, 90.0))
    with pytest.raises(ConfigError, match="n_blocks"):
        diffusion_coefficients(positions, 1.0, numbers=np.array([3, 3]), n_blocks=1)
    with pytest.raises(DataError, match="no frames"):
        unwrap([])
    frames = [Atoms("Li2", cell=[5, 5, 5], pbc=True), Atoms("LiO", cell=[5, 5, 5], pbc=True)]
    with pytest.raises(DataError, match="frame 1 has other atoms"):
        unwrap(frames)


def test_arrhenius_recovers_Ea_and_D0_of_synthetic_data():
    Ea, D0 = 0.35, 2e-2  # eV, Å^2/fs
    T = np.array([600.0, 700.0, 800.0, 900.0, 1000.0, 1200.0])
    rng = np.random.default_rng(5)
    D_exact = D0 * np.exp(-Ea / (K_B * T))
    D_err = 0.03 * D_exact
    D = D_exact * (1 + 0.03 * rng.standard_normal(T.size))
    fit = arrhenius(T, D, D_err)
    assert fit.Ea_eV == pytest.approx(Ea, abs=3 * fit.Ea_err_eV)
    assert fit.Ea_eV == pytest.approx(Ea, rel=0.05)
    assert 0 < fit.Ea_err_eV < 0.02
    assert fit.D0 == pytest.approx(D0, abs=3 * fit.D0_err)
    exact = arrhenius(T, D_exact)
    assert exact.Ea_eV == pytest.approx(Ea, rel=1e-10) and exact.D0 == pytest.approx(D0, rel=1e-10)
    assert exact.D(800.0) == pytest.approx(D_exact[2], rel=1e-10)


def test_arrhenius_needs_two_temperatures():
    with pytest.raises(DataError, match="2 or more different temperatures"):
        arrhenius([800.0], [1e-3])
    with pytest.raises(DataError, match="2 or more different temperatures"):
        arrhenius([800.0, 800.0], [1e-3, 2e-3])
    two = arrhenius([800.0, 1000.0], [1e-4, 1e-3])
    assert two.Ea_eV > 0 and np.isnan(two.Ea_err_eV)


def _md_like(n_frames: int, frame_fs: float, seed: int) -> list[Atoms]:
    """20 Li on Langevin (Ornstein-Uhlenbeck) paths, ballistic then diffusive, among 40 O vibrating
    about fixed sites; all atoms share a slow drift; frames wrapped into a 12 Å box."""
    rng = np.random.default_rng(seed)
    n_li, n_o, box = 20, 40, 12.0
    kT_over_m = 1.2e-4  # Å^2/fs^2, Li at about 1,000 K
    gamma = 0.01  # 1/fs
    decay = np.exp(-gamma * frame_fs)
    li = rng.uniform(0, box, (n_li, 3))
    v = rng.normal(0, np.sqrt(kT_over_m), (n_li, 3))
    sites = rng.uniform(0, box, (n_o, 3))
    drift = np.array([2e-4, -1e-4, 5e-5])  # Å/fs
    frames = []
    for step in range(n_frames):
        o = sites + rng.normal(0, 0.1, (n_o, 3))
        atoms = Atoms(f"Li{n_li}O{n_o}", positions=np.concatenate([li, o]) + drift * step * frame_fs, cell=[box] * 3, pbc=True)
        atoms.wrap()
        frames.append(atoms)
        li = li + v * frame_fs  # exact enough for the test: an MD-like velocity memory of 1/gamma
        v = v * decay + rng.normal(0, np.sqrt(kT_over_m * (1 - decay**2)), (n_li, 3))
    return frames


def test_D_equals_pymatgen_analysis_diffusion_within_1_percent():
    analyzer = pytest.importorskip(
        "pymatgen.analysis.diffusion.analyzer", reason="the peer pymatgen-analysis-diffusion is not installed (pip install -e '.[dev]')"
    )
    from pymatgen.io.ase import AseAtomsAdaptor

    frame_fs, n_frames = 20, 1000
    frames = _md_like(n_frames, frame_fs, seed=2)
    structures = [AseAtomsAdaptor.get_structure(atoms) for atoms in frames]
    # pymatgen's smoothed="max" fits lags from 1,000 fs to n_Li * n_frames // min_obs frames (200
    # here, one lag per frame below 400 lags) with weights 1/t, after removing the framework drift
    peer = analyzer.DiffusionAnalyzer.from_structures(structures, "Li", temperature=1000, time_step=frame_fs, step_skip=1, min_obs=100)
    ours = diffusion_coefficients(frames, timestep_fs=frame_fs, fit_fs=(1000.0, 199 * frame_fs), remove_drift=True, weights="inverse_time", species=["Li"])["Li"]
    D_peer = peer.diffusivity * 10.0  # cm^2/s -> Å^2/fs
    assert ours.D == pytest.approx(D_peer, rel=0.01)  # the acceptance; measured: equal to 1e-15
    assert ours.D == pytest.approx(D_peer, rel=1e-9)
    np.testing.assert_allclose(ours.msd[50:200], peer.msd, rtol=1e-8)
