"""Reference plugins: the analytic Morse reference, any ASE calculator, GFN1-xTB (tblite), and
the optional CHGNet, SevenNet and GPAW."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces

from pesmith.errors import LabelingFailed, ReferenceSetupError
from pesmith.plugins.references.ase_calculator import AseReference
from pesmith.plugins.references.morse import Morse, MorseCalculator
from pesmith.plugins.references.xtb import XTB


def li_si_cell(seed: int = 0) -> Atoms:
    """Zinc-blende LiSi (8 atoms, a = 5.9 Å), rattled by 0.05 Å."""
    atoms = bulk("LiSi", "zincblende", a=5.9, cubic=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def numerical_stress(atoms: Atoms, calc, h: float = 1e-5) -> np.ndarray:
    """Voigt stress (eV/Å^3) from central differences of the energy under strain."""
    cell, volume, stress = atoms.cell.array.copy(), atoms.get_volume(), np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * h
                strained = atoms.copy()
                strained.set_cell(cell @ strain, scale_atoms=True)
                strained.calc = calc
                energies.append(strained.get_potential_energy())
            stress[a, b] = (energies[0] - energies[1]) / (2 * h * volume)
    return stress.flat[[0, 4, 8, 5, 2, 1]]


# --- morse -----------------------------------------------------------------------------------


def test_morse_pair_sits_at_its_minimum():
    calc = MorseCalculator(pairs={"Li-Si": (0.5, 1.2, 2.6)}, cutoff=8.0, width=1.0)
    dimer = Atoms("LiSi", positions=[[0, 0, 0], [0, 0, 2.6]])
    dimer.calc = calc
    assert dimer.get_potential_energy() == pytest.approx(-0.5)
    assert np.abs(dimer.get_forces()).max() < 1e-12


def test_morse_forces_and_stress_match_finite_differences():
    atoms = li_si_cell()
    atoms.set_cell(atoms.cell * [1.0, 1.03, 0.98], scale_atoms=True)
    atoms.calc = MorseCalculator()
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5), atol=1e-6)
    np.testing.assert_allclose(atoms.get_stress(), numerical_stress(atoms, MorseCalculator()), atol=1e-7)


def test_morse_energy_is_continuous_at_the_cutoff():
    calc = MorseCalculator(pairs={"Li-Li": (0.15, 1.0, 3.0)}, cutoff=6.0, width=1.0)
    energies = []
    for r in (6.0 - 1e-6, 6.0 + 1e-6):
        dimer = Atoms("Li2", positions=[[0, 0, 0], [0, 0, r]])
        dimer.calc = calc
        energies.append(dimer.get_potential_energy())
    assert abs(energies[0] - energies[1]) < 1e-12


def test_morse_label_and_relax():
    reference = Morse()
    energy, forces, stress = reference.label(li_si_cell())
    assert np.isfinite(energy) and forces.shape == (8, 3) and stress.shape == (6,)
    relaxed = reference.relax(li_si_cell(), fmax=0.01, steps=500)
    assert np.abs(relaxed.get_forces()).max() < 0.01
    assert relaxed.get_potential_energy() < energy


def test_morse_without_parameters_for_an_element_fails_one_structure():
    with pytest.raises(LabelingFailed, match=r"no pair parameters for \['Cu'\]"):
        Morse().label(bulk("Cu", "fcc", a=3.6))


def test_morse_rejects_malformed_pairs():
    with pytest.raises(ReferenceSetupError, match="'Li-Xx'"):
        Morse(pairs={"Li-Xx": [1, 1, 1]})


# --- ase: any calculator by import path ----------------------------------------------------------


def test_ase_reference_labels_like_the_calculator():
    reference = AseReference("pesmith.plugins.references.morse.MorseCalculator", {"cutoff": 5.0})
    direct = Morse(cutoff=5.0).label(li_si_cell())
    via_path = reference.label(li_si_cell())
    assert via_path[0] == pytest.approx(direct[0])
    np.testing.assert_allclose(via_path[1], direct[1])
    assert reference.get_config()["calculator"].endswith("MorseCalculator")
    assert reference.code_version().startswith("pesmith")


def test_ase_reference_with_emt_where_it_applies():
    energy, forces, stress = AseReference("ase.calculators.emt:EMT").label(bulk("Cu", "fcc", a=3.6, cubic=True))
    assert abs(energy) < 1.0 and np.abs(forces).max() < 1e-10 and stress.shape == (6,)


@pytest.mark.parametrize(
    "path,message",
    [
        ("ase.calculators.nope.Vasp", "cannot import module 'ase.calculators.nope'"),
        ("ase.calculators.emt.EMTT", "has no calculator class 'EMTT'"),
        ("EMT", "is not an import path"),
        ("ase.atoms.Atoms", "is not an ASE Calculator"),
    ],
)
def test_ase_reference_bad_import_path(path, message):
    with pytest.raises(ReferenceSetupError, match=message):
        AseReference(path)


def test_ase_reference_wrong_keyword_lists_valid_ones():
    with pytest.raises(ReferenceSetupError, match=r"EMT has no keyword 'asap_cutof'; valid: .*asap_cutoff"):
        AseReference("ase.calculators.emt.EMT", {"asap_cutof": True})
    AseReference("ase.calculators.emt.EMT", {"asap_cutof": True}, check_keywords=False)


def test_calculator_exception_becomes_labeling_failed():
    reference = AseReference("flaky_calculators.FlakyMorse", {"fail_formula": "Li4Si4"})
    with pytest.raises(LabelingFailed, match=r"AseReference on Li4Si4 \(8 atoms\): CalculationFailed: SCF did not"):
        reference.label(li_si_cell())


# --- xtb (tblite) ------------------------------------------------------------------------------


def test_xtb_labels_a_small_li_si_cell():
    reference = XTB()
    atoms = bulk("LiSi", "zincblende", a=5.9)  # 2 atoms; converges at 1000 K in ~0.1 s
    atoms.rattle(0.02, seed=1)
    energy, forces, stress = reference.label(atoms)
    assert np.isfinite(energy) and forces.shape == (2, 3) and stress.shape == (6,)
    assert np.abs(forces.sum(axis=0)).max() < 1e-6  # Newton's third law
    assert reference.code_version().startswith("tblite ")


def test_xtb_forces_match_finite_differences():
    atoms = bulk("LiSi", "zincblende", a=5.9)
    atoms.rattle(0.05, seed=2)
    _, forces, _ = XTB().label(atoms)
    h, shifted = 1e-4, []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 2] += sign * h
        shifted.append(XTB().label(moved)[0])
    assert forces[0, 2] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * h), abs=1e-3)


def test_xtb_scf_failure_is_a_labeling_failure():
    atoms = bulk("LiSi", "zincblende", a=5.9)
    with pytest.raises(LabelingFailed, match="SCF not converged"):
        XTB(max_iterations=1).label(atoms)


def test_xtb_rejects_unknown_method():
    with pytest.raises(ReferenceSetupError, match="GFN1-xTB, GFN2-xTB"):
        XTB(method="GFN3")


# --- chgnet (optional extra) -------------------------------------------------------------------


def test_chgnet_loads_and_labels_without_a_word(capfd):
    pytest.importorskip("chgnet", reason="chgnet not installed: pip install 'pesmith[chgnet]'")
    from pesmith.plugins.references.chgnet import CHGNetReference, load_model

    load_model.cache_clear()  # a fresh process, as a labeling worker is
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        energy, _, _ = CHGNetReference().label(li_si_cell())
    assert np.isfinite(energy)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr() == ("", "")


def test_chgnet_labels_li_si_with_ase_stress():
    pytest.importorskip("chgnet", reason="chgnet not installed: pip install 'pesmith[chgnet]'")
    from pesmith.plugins.references.chgnet import CHGNetReference

    reference = CHGNetReference()
    atoms = li_si_cell()
    energy, forces, stress = reference.label(atoms)
    assert -5.0 < energy / len(atoms) < -2.0 and forces.shape == (8, 3)
    # ASE sign convention: compare the mean stress with dE/d(strain) / V
    h, energies = 1e-3, []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell * (1 + sign * h), scale_atoms=True)
        energies.append(reference.label(strained)[0])
    numeric = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume() / 3
    assert stress[:3].mean() == pytest.approx(numeric, abs=2e-4)
    assert reference.code_version().startswith("chgnet ")


# --- sevennet (optional extra, in .[dev]) ------------------------------------------------------


def sevennet(**options):
    """A SevenNet reference, SevenNet-0 unless ``model`` is given (3x faster than the default)."""
    pytest.importorskip("sevenn", reason="sevenn not installed: pip install 'pesmith[sevennet]'")
    from pesmith.plugins.references.sevennet import SevenNetReference

    return SevenNetReference(**{"model": "7net-0", **options})


def test_sevennet_labels_li_si_with_ase_stress():
    reference = sevennet()
    atoms = li_si_cell()
    energy, forces, stress = reference.label(atoms)
    assert -5.0 < energy / len(atoms) < -2.0 and forces.shape == (8, 3) and stress.shape == (6,)
    assert np.isfinite(forces).all() and np.isfinite(stress).all()
    assert np.abs(forces.sum(axis=0)).max() < 1e-4  # Newton's third law
    h, energies = 1e-3, []  # ASE sign convention: mean stress = dE/d(strain) / V
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell * (1 + sign * h), scale_atoms=True)
        energies.append(reference.label(strained)[0])
    numeric = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume() / 3
    assert stress[:3].mean() == pytest.approx(numeric, abs=2e-4)
    assert reference.code_version() == f"sevenn {__import__('sevenn').__version__} (model 7net-0)"


@pytest.mark.parametrize("options", [{"model": "7net-0"}, {"model": "7net-mf-0", "modal": "PBE"}])
def test_sevennet_forces_are_minus_the_energy_gradient(options):
    reference = sevennet(**options)
    atoms = bulk("LiSi", "zincblende", a=5.9)
    atoms.rattle(0.1, seed=3)
    forces = reference.label(atoms)[1]
    h, numeric = 1e-2, np.zeros_like(forces)  # the model runs in float32: a large step
    for index in range(len(atoms)):
        for axis in range(3):
            shifted = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[index, axis] += sign * h
                shifted.append(reference.label(moved)[0])
            numeric[index, axis] = -(shifted[0] - shifted[1]) / (2 * h)
    assert np.abs(forces).max() > 0.05  # not a trivially zero comparison
    np.testing.assert_allclose(forces, numeric, atol=5e-3)


def test_sevennet_stress_only_for_periodic_cells():
    cluster = Atoms("LiSi", positions=[[0, 0, 0], [0, 0, 2.5]])
    energy, forces, stress = sevennet().label(cluster)
    assert np.isfinite(energy) and forces.shape == (2, 3) and stress is None
    assert forces[0, 2] == pytest.approx(-forces[1, 2], abs=1e-5) and abs(forces[0, 2]) > 1e-3


def test_sevennet_relax_lowers_energy_and_forces():
    reference = sevennet()
    atoms = bulk("LiSi", "zincblende", a=5.9)
    atoms.rattle(0.1, seed=3)
    energy, forces, _ = reference.label(atoms)
    relaxed = reference.relax(atoms, fmax=0.05, steps=300)
    assert np.abs(forces).max() > 0.1
    assert np.linalg.norm(relaxed.get_forces(), axis=1).max() < 0.05
    assert relaxed.get_potential_energy() < energy


def test_sevennet_modal_chooses_the_fidelity():
    atoms = li_si_cell()
    pbe = sevennet(model="7net-mf-0", modal="PBE").label(atoms)[0]
    r2scan = sevennet(model="7net-mf-0", modal="R2SCAN").label(atoms)[0]
    assert abs(pbe - r2scan) / len(atoms) > 0.01
    assert sevennet(model="7net-mf-0", modal="PBE").get_config() == {"model": "7net-mf-0", "modal": "PBE", "device": "cpu"}


@pytest.mark.parametrize(
    "options,message",
    [
        ({"model": "7net-99"}, r"unknown model '7net-99'; the installed sevenn .* ships: 7net-0, .*7net-l3i5, 7net-mf-0"),
        ({"model": "7net-omat"}, r"unknown model '7net-omat'"),  # sevenn would download it: not shipped
        ({"model": "7net-mf-0"}, r"'7net-mf-0' needs a modal; set modal to one of: R2SCAN, PBE"),
        ({"model": "7net-mf-0", "modal": "pbe"}, r"has no modal 'pbe'; set modal to one of: R2SCAN, PBE"),
        ({"model": "7net-0", "modal": "PBE"}, r"'7net-0' has a single fidelity; remove modal"),
    ],
)
def test_sevennet_bad_model_or_modal_lists_the_valid_ones(options, message):
    with pytest.raises(ReferenceSetupError, match=message):
        sevennet(**options)


def test_sevennet_runs_on_the_callers_torch_threads():
    import os

    import torch

    reference = sevennet()
    torch.set_num_threads(1)  # as conftest.py (and OMP_NUM_THREADS=1) leave it
    reference.label(li_si_cell())  # warm: model loaded, pools that one thread needs are up
    before = len(os.listdir("/proc/self/task"))
    reference.label(li_si_cell(seed=2))
    assert torch.get_num_threads() == 1
    assert len(os.listdir("/proc/self/task")) == before


def test_sevennet_through_pesmith_label(tmp_path, capsys, monkeypatch):
    import ase.db
    import ase.io
    import yaml

    from pesmith import cli
    from pesmith.registry import Registry

    sevennet()
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    ase.io.write(tmp_path / "structures.xyz", [li_si_cell(seed) for seed in range(2)], format="extxyz")
    config = {"structures": "structures.xyz", "database": "labels.db", "progress": False}
    (tmp_path / "label.yaml").write_text(yaml.safe_dump({**config, "reference": {"kind": "sevennet"}}))  # the default model
    assert cli.main(["label", str(tmp_path / "label.yaml")]) == 0
    assert "2 labeled, 0 failed" in capsys.readouterr().out
    with ase.db.connect(str(tmp_path / "labels.db")) as db:
        stored = list(db.select())
    assert [row.status for row in stored] == ["ok", "ok"] and stored[0].method == "sevennet"
    assert stored[0].data["parameters"] == {"model": "7net-l3i5", "modal": None, "device": "cpu"}
    assert stored[0].code_version.startswith("sevenn ") and "7net-l3i5" in stored[0].code_version
    assert stored[0].stress.shape == (6,) and np.isfinite(stored[0].forces).all()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**config, "reference": {"kind": "sevennet", "model": "7net-O"}}))
    assert cli.main(["label", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "bad.yaml" in err[0] and "unknown model '7net-O'" in err[0] and "7net-0" in err[0]


# --- gpaw (optional, compiled: scripts/install_gpaw.sh) ----------------------------------------


@pytest.mark.slow  # 3 plane-wave SCF runs: about 10 s on an idle core, over a minute on a busy one
def test_gpaw_plane_wave_pbe_labels_a_small_cell():
    pytest.importorskip("gpaw", reason="gpaw not installed: run scripts/install_gpaw.sh")
    from pesmith.plugins.references.gpaw import GPAWReference

    reference = GPAWReference(cutoff=250.0, kpoint_density=1.5, smearing=0.1)
    atoms = bulk("LiSi", "zincblende", a=5.9)
    atoms.rattle(0.03, seed=0)
    energy, forces, stress = reference.label(atoms)
    assert forces.shape == (2, 3) and stress.shape == (6,)
    assert np.abs(forces.sum(axis=0)).max() < 1e-3
    h, shifted = 1e-3, []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 2] += sign * h
        shifted.append(reference.label(moved)[0])
    assert forces[0, 2] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * h), abs=0.02)
    assert reference.code_version().startswith("gpaw ")


@pytest.mark.slow
def test_gpaw_with_ranks_runs_under_mpiexec(monkeypatch):
    pytest.importorskip("gpaw", reason="gpaw not installed: run scripts/install_gpaw.sh")
    import shutil
    import sys
    from pathlib import Path

    from pesmith.plugins.references.gpaw import GPAWReference

    if shutil.which("mpiexec") is None:
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}")
    if shutil.which("mpiexec") is None:
        pytest.skip("no mpiexec (pip install 'pesmith[mpi]')")
    atoms = bulk("LiSi", "zincblende", a=5.9)
    atoms.rattle(0.03, seed=0)
    settings = {"cutoff": 250.0, "kpoint_density": 1.5, "smearing": 0.1}
    serial = GPAWReference(**settings).label(atoms)
    parallel = GPAWReference(ranks=2, **settings).label(atoms)
    assert parallel[0] == pytest.approx(serial[0], abs=1e-4)
    np.testing.assert_allclose(parallel[1], serial[1], atol=1e-3)


def test_gpaw_bad_setup_is_named():
    pytest.importorskip("gpaw", reason="gpaw not installed: run scripts/install_gpaw.sh")
    from pesmith.plugins.references.gpaw import GPAWReference

    with pytest.raises(ReferenceSetupError, match="cutoff"):
        GPAWReference(cutoff=-1)


def test_missing_optional_program_is_a_setup_error_naming_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name.split(".")[0] in ("gpaw", "chgnet", "sevenn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    from pesmith.plugins.references.chgnet import CHGNetReference
    from pesmith.plugins.references.gpaw import GPAWReference

    with pytest.raises(ReferenceSetupError, match=r"pesmith\[chgnet\]"):
        CHGNetReference()
    with pytest.raises(ReferenceSetupError, match="install_gpaw.sh"):
        GPAWReference()
    from pesmith.plugins.references.sevennet import SevenNetReference

    with pytest.raises(ReferenceSetupError, match=r"pesmith\[sevennet\]"):
        SevenNetReference()
