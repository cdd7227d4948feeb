"""pesmith analyze rdf|msd|vdos|sites|kmc: the analysis functions on a trajectory (or sites) file, as CSV, JSON and PNG."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from pesmith import cli
from pesmith.analysis.diffusion import diffusion_coefficients
from pesmith.analysis.vibrations import vdos


def test_rdf_of_fcc_frames_gives_coordination_12(tmp_path, capsys):
    frames = []
    for seed in range(3):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(3)
        atoms.rattle(0.02, seed=seed)
        frames.append(atoms)
    trajectory = tmp_path / "al.xyz"
    ase.io.write(trajectory, frames, format="extxyz")
    assert cli.main(["analyze", "rdf", str(trajectory), "--r-max", "4.0", "--bins", "160"]) == 0
    out = capsys.readouterr().out
    assert "CN Al-Al: 12.00 within" in out
    summary = json.loads((tmp_path / "al_rdf.json").read_text())
    assert summary["frames"] == 3 and summary["coordination"]["Al-Al"]["CN"] == pytest.approx(12.0)
    header = (tmp_path / "al_rdf.csv").read_text().splitlines()[0]
    assert header == "r_A,g_total,g_Al-Al"
    table = np.loadtxt(tmp_path / "al_rdf.csv", delimiter=",", skiprows=1)
    assert table[np.argmax(table[:, 1]), 0] == pytest.approx(4.05 / np.sqrt(2), abs=0.05)
    assert (tmp_path / "al_rdf.png").is_file()


def test_msd_gives_the_library_diffusion_coefficient(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n_frames, n_atoms, step = 400, 40, 0.05  # Å per component per frame
    positions = np.cumsum(rng.normal(0, step, size=(n_frames, n_atoms, 3)), axis=0) + rng.uniform(0, 20, size=(n_atoms, 3))
    frames = [Atoms(["Li"] * 30 + ["Si"] * 10, positions=p, cell=[20, 20, 20], pbc=True) for p in positions]
    for atoms in frames:
        atoms.wrap()
    trajectory = tmp_path / "walk.xyz"
    ase.io.write(trajectory, frames, format="extxyz")
    assert cli.main(["analyze", "msd", str(trajectory), "--timestep-fs", "10", "--species", "Li", "--output", str(tmp_path / "walk")]) == 0
    summary = json.loads((tmp_path / "walk.json").read_text())
    expected = diffusion_coefficients(ase.io.read(trajectory, index=":"), 10.0, species=["Li"])["Li"]
    assert summary["Li"]["D_A2_per_fs"] == pytest.approx(expected.D, rel=1e-12)
    assert summary["Li"]["D_A2_per_fs"] == pytest.approx(step**2 / (2 * 10.0), rel=0.1)  # MSD = 3 sigma^2 t / dt = 6 D t
    assert "D(Li) = " in capsys.readouterr().out


def test_vdos_uses_every_nth_frame_with_its_time_step(tmp_path):
    t = np.arange(600) * 2.0  # fs
    omega = 2 * np.pi * 5.0e-3  # 5 THz in rad/fs
    frames = []
    for k, time in enumerate(t):
        atoms = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[10, 10, 10], pbc=True)
        velocity = np.array([[np.cos(omega * time), 0, 0], [-np.cos(omega * time), 0, 0]]) * 0.01
        atoms.set_velocities(velocity)
        frames.append(atoms)
    trajectory = tmp_path / "osc.xyz"
    ase.io.write(trajectory, frames, format="extxyz")
    assert cli.main(["analyze", "vdos", str(trajectory), "--timestep-fs", "2", "--every", "2", "--output", str(tmp_path / "osc")]) == 0
    summary = json.loads((tmp_path / "osc.json").read_text())
    direct = vdos(ase.io.read(trajectory, index="::2"), 4.0)
    assert summary["peak_THz"] == pytest.approx(float(direct.frequency_THz[np.argmax(direct.dos)]))
    assert summary["peak_THz"] == pytest.approx(5.0, abs=0.1)


def test_rdf_of_a_trajectory_without_a_cell_is_one_line(tmp_path, capsys):
    trajectory = tmp_path / "molecule.xyz"
    ase.io.write(trajectory, [Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])], format="extxyz")
    assert cli.main(["analyze", "rdf", str(trajectory)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "cell" in err[0]
    assert not list(tmp_path.glob("molecule_rdf*"))


def test_sites_of_li_hopping_between_two_places(tmp_path, capsys):
    """Two Li in a cubic Si host: each sits at one of its two places and swaps place halfway;
    the sites file holds the 4 places (occupancy 0.5 each) and the JSON the 2 hops seen."""
    rng = np.random.default_rng(0)
    places = np.array([[2.0, 2.0, 2.0], [4.5, 2.0, 2.0], [2.0, 7.0, 7.0], [2.0, 7.0, 4.5]])
    host = np.array([[7.0, 7.0, 7.0], [7.0, 2.0, 7.0]])
    frames = []
    for index in range(200):
        li = places[[0, 2]] if index < 100 else places[[1, 3]]
        positions = np.vstack([li + rng.normal(0, 0.1, (2, 3)), host])
        frames.append(Atoms("Li2Si2", positions=positions, cell=[10.0] * 3, pbc=True))
    trajectory = tmp_path / "lisi.xyz"
    ase.io.write(trajectory, frames, format="extxyz")
    assert cli.main(["analyze", "sites", str(trajectory), "--species", "Li"]) == 0
    assert "4 Li sites from 200 frames" in capsys.readouterr().out
    sites = ase.io.read(tmp_path / "lisi_sites.xyz")
    assert len(sites) == 4
    np.testing.assert_allclose(sites.arrays["occupancy"], 0.5)
    nearest = np.linalg.norm(places[:, None, :] - sites.positions[None, :, :], axis=2).min(axis=1)
    assert nearest.max() < 0.1  # each place found (100 positions, 0.1 Å per axis)
    summary = json.loads((tmp_path / "lisi_sites.json").read_text())
    assert summary["hops_seen"] == 2 and summary["site_pairs_with_hops"] == 2
    assert (tmp_path / "lisi_sites.png").is_file() and (tmp_path / "lisi_sites.csv").is_file()


def test_sites_of_a_species_that_is_absent_is_one_line(tmp_path, capsys):
    trajectory = tmp_path / "si.xyz"
    ase.io.write(trajectory, [bulk("Si", "diamond", a=5.43, cubic=True)], format="extxyz")
    assert cli.main(["analyze", "sites", str(trajectory)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Li atom" in err


def _simple_cubic_sites(n: int, a: float) -> Atoms:
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    return Atoms(f"X{n**3}", positions=grid, cell=[n * a] * 3, pbc=True)


def test_kmc_on_a_sites_file_recovers_the_barrier(tmp_path, capsys):
    """20 carriers on 512 simple-cubic sites (3 Å), one barrier of 0.30 eV: D = a^2 k per
    direction up to the small blocking at 4 % occupancy, and the Arrhenius fit over 500 and
    1000 K gives Ea back."""
    from ase import units

    sites = _simple_cubic_sites(8, 3.0)
    occupancy = np.zeros(len(sites))
    occupancy[::26] = 1.0  # 20 sites hold a carrier: the default --carriers
    sites.set_array("occupancy", occupancy)
    path = tmp_path / "sites.xyz"
    ase.io.write(path, sites, format="extxyz")
    assert cli.main(["analyze", "kmc", str(path), "--r-cut", "3.1", "--barrier", "0.30", "--temperature", "500", "1000", "--hops", "8000"]) == 0
    assert "Arrhenius: Ea = " in capsys.readouterr().out
    summary = json.loads((tmp_path / "sites_kmc.json").read_text())
    assert summary["carriers"] == 20 and summary["hops_in_network"] == 6 * 512
    assert summary["Ea_eV"] == pytest.approx(0.30, rel=0.07)
    table = np.loadtxt(tmp_path / "sites_kmc.csv", delimiter=",", skiprows=1)
    exact = 9.0 * 1e13 * np.exp(-0.30 / (units.kB * table[:, 0])) * 1e-16  # a^2 k, cm^2/s
    np.testing.assert_allclose(table[:, 1], exact, rtol=0.12)
    assert (tmp_path / "sites_kmc.png").is_file()


def test_kmc_barrier_table_keeps_only_its_hops(tmp_path):
    from pesmith.analysis.kmc import network_from_table

    sites = _simple_cubic_sites(4, 3.0)
    x_neighbour = {s: int(np.flatnonzero(np.all(np.isclose(sites.positions, (sites.positions[s] + [3.0, 0, 0]) % 12.0), axis=1))[0]) for s in range(64)}
    table = {(s, t): 0.2 for s, t in x_neighbour.items()} | {(t, s): 0.4 for s, t in x_neighbour.items()}
    network = network_from_table(sites, 3.1, table)
    assert network.source.size == 128
    assert np.all(np.abs(network.vector[:, 1:]) < 1e-9)  # only hops along x
    forward = network.vector[:, 0] > 0
    np.testing.assert_allclose(network.barrier_eV[forward], 0.2)
    np.testing.assert_allclose(network.barrier_eV[~forward], 0.4)
    with_default = network_from_table(sites, 3.1, table, default_eV=0.5)
    assert with_default.source.size == 6 * 64


def test_kmc_bad_input_is_one_line(tmp_path, capsys):
    sites = _simple_cubic_sites(4, 3.0)
    path = tmp_path / "sites.xyz"
    ase.io.write(path, sites, format="extxyz")
    far = tmp_path / "far.csv"
    far.write_text("source,target,barrier_eV\n0,63,0.3\n")
    cases = [
        (["--temperature", "500", "--carriers", "3"], "needs --barrier"),
        (["--barriers", str(far), "--temperature", "500", "--carriers", "3"], "farther apart than r_cut"),
        (["--barrier", "0.3", "--temperature", "500"], "--carriers must be"),
    ]
    for extra, message in cases:
        assert cli.main(["analyze", "kmc", str(path), "--r-cut", "3.1", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err
