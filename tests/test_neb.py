"""pesmith neb / pesmith.simulate.neb: the climbing-image barrier of ASE's NEB tutorial (an Au
adatom hopping between hollow sites of Al(100), EMT) equals ASE's own NEB run on the same
endpoints and lies at the tutorial's 0.37 eV; a killed band resumes; bad endpoints are one line
and exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import BFGS

from pesmith import cli
from pesmith.errors import ConfigError, DataError
from pesmith.simulate.neb import NEBSettings, check_endpoints, run_neb

EMT_OPTIONS = ["--reference", "ase", "--option", "calculator=ase.calculators.emt.EMT"]
FMAX = 0.01  # eV/Å, band and endpoints


def tutorial_endpoints() -> tuple:
    """ASE's diffusion tutorial: 2x2 Al(100), 3 layers, the lower two fixed, an Au adatom in a
    hollow site, and the same slab with the adatom one hollow site further along x (unrelaxed)."""
    slab = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.center(axis=2, vacuum=4.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in slab]))
    slab.info.clear()  # add_adsorbate's dict, which extxyz cannot store
    final = slab.copy()
    final[-1].x += slab.cell[0, 0] / 2
    return slab, final


def ase_barrier(initial, final, images: int) -> float:
    """The barrier (eV) of ASE's climbing-image NEB, run as the tutorial does (BFGS, one EMT per
    image), with endpoints and band relaxed to FMAX."""
    ends = []
    for atoms in (initial, final):
        end = atoms.copy()
        end.calc = EMT()
        BFGS(end, logfile=None).run(fmax=FMAX)
        ends.append(end)
    band = [ends[0], *(ends[0].copy() for _ in range(images)), ends[1]]
    for image in band[1:-1]:
        image.calc = EMT()
    neb = NEB(band, climb=True, method="improvedtangent")
    neb.interpolate(apply_constraint=False)
    assert BFGS(neb, logfile=None).run(fmax=FMAX, steps=500)
    energies = [image.get_potential_energy() for image in band]
    return max(energies) - energies[0]


@pytest.fixture(scope="module")
def endpoints():
    return tutorial_endpoints()


@pytest.fixture(scope="module")
def endpoint_files(tmp_path_factory, endpoints):
    folder = tmp_path_factory.mktemp("endpoints")
    paths = folder / "initial.xyz", folder / "final.xyz"
    for path, atoms in zip(paths, endpoints):
        ase.io.write(path, atoms, format="extxyz")
    return paths


@pytest.fixture(scope="module")
def band(tmp_path_factory, endpoints):
    path = tmp_path_factory.mktemp("neb") / "band.xyz"
    return run_neb(*endpoints, EMT(), NEBSettings(images=3, fmax=FMAX), path)


def test_the_tutorial_barrier_equals_ases_neb(band, endpoints):
    assert band.converged and band.max_force < FMAX
    assert band.barrier_forward == pytest.approx(ase_barrier(*endpoints, images=3), abs=1e-3)
    assert 0.35 < band.barrier_forward < 0.40  # the tutorial's plot: 0.37 eV
    assert band.barrier_backward == pytest.approx(band.barrier_forward, abs=1e-3)  # a hop between equivalent sites
    assert band.climbing_image == 2 and len(band.energies) == 5
    hop = endpoints[0].cell[0, 0] / 2  # 2.86 Å between hollow sites, the adatom's own share of the path
    assert np.all(np.diff(band.reaction_coordinate) > 0) and hop < band.reaction_coordinate[-1] < hop + 0.5


def test_the_band_file_holds_every_image_with_its_energy_and_constraints_are_kept(band, endpoints):
    frames = ase.io.read(band.band, index=":")
    assert len(frames) == 5 and all(frame.info["neb_step"] == band.steps for frame in frames)
    assert [frame.get_potential_energy() for frame in frames] == pytest.approx(band.energies, abs=1e-9)
    fixed = [atom.tag > 1 for atom in endpoints[0]]
    for frame in frames:  # the two lower layers did not move
        assert np.allclose(frame.positions[fixed], endpoints[0].positions[fixed])


def test_a_band_cut_short_resumes_to_the_same_barrier(band, endpoints, tmp_path):
    path = tmp_path / "band.xyz"
    short = run_neb(*endpoints, EMT(), NEBSettings(images=3, fmax=FMAX, steps=25), path)  # the endpoints take 21 FIRE steps each, the band about 50
    assert not short.converged and short.steps == 25 and short.max_force > FMAX
    with pytest.raises(ConfigError, match="pass --resume"):
        run_neb(*endpoints, EMT(), NEBSettings(images=3, fmax=FMAX), path)
    resumed = run_neb(*endpoints, EMT(), NEBSettings(images=3, fmax=FMAX), path, resume=True)
    assert resumed.converged and resumed.steps > 25
    assert resumed.barrier_forward == pytest.approx(band.barrier_forward, abs=1e-3)
    with pytest.raises(ConfigError, match="--images 3"):
        run_neb(*endpoints, EMT(), NEBSettings(images=5, fmax=FMAX), path, resume=True)


def test_endpoints_of_other_atoms_are_refused(endpoints):
    initial, final = endpoints
    with pytest.raises(DataError, match="has 13 atoms and b 12"):
        check_endpoints(initial, final[:-1], ("a", "b"))
    swapped = final[[12, *range(12)]]
    with pytest.raises(DataError, match="atom 0 is Al in one, Au in the other"):
        check_endpoints(initial, swapped, ("a", "b"))


def test_neb_verb_writes_band_json_and_plot(band, endpoint_files, tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(["neb", *map(str, endpoint_files), *EMT_OPTIONS, "--images", "3", "--fmax", str(FMAX), "--idpp", "--output", str(output)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("barrier 0.37")
    summary = json.loads((output / "neb.json").read_text())
    assert summary["converged"] and summary["barrier_forward_eV"] == pytest.approx(band.barrier_forward, abs=1e-3)
    assert len(summary["energies_eV"]) == len(summary["reaction_coordinate_A"]) == 5
    assert len(ase.io.read(output / "band.xyz", index=":")) == 5
    assert (output / "neb.png").read_bytes()[:4] == b"\x89PNG"


def test_neb_verb_refuses_endpoints_of_other_atoms_in_one_line(endpoints, tmp_path, capsys):
    initial, final = endpoints
    paths = {name: tmp_path / f"{name}.xyz" for name in ("initial", "short", "swapped")}
    ase.io.write(paths["initial"], initial, format="extxyz")
    ase.io.write(paths["short"], final[:-1], format="extxyz")
    ase.io.write(paths["swapped"], final[[12, *range(12)]], format="extxyz")
    for other, expected in (("short", "has 13 atoms and FINAL"), ("swapped", "order their species differently")):
        assert cli.main(["neb", str(paths["initial"]), str(paths[other]), *EMT_OPTIONS, "--output", str(tmp_path / other)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and str(paths[other]) in err[0]
    assert not (tmp_path / "short").exists()


def test_the_console_script_exits_2_with_one_line(endpoint_files, tmp_path):
    script = shutil.which("pesmith", path=str(Path(sys.executable).parent))
    assert script is not None
    initial, _ = endpoint_files
    one_atom = tmp_path / "one.xyz"
    ase.io.write(one_atom, ase.io.read(initial)[:1], format="extxyz")
    run = subprocess.run([script, "neb", str(initial), str(one_atom), *EMT_OPTIONS, "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"error: INITIAL {initial} has 13 atoms and FINAL {one_atom} 1: the endpoints of a band hold the same atoms; make the two structures match"]


def test_a_model_file_computes_the_band(tiny_si_model, small_si_xyz, tmp_path):
    from pesmith.calculator import PesmithCalculator

    initial = ase.io.read(small_si_xyz, index=0)
    initial.calc = None
    final = initial.copy()
    final.positions[0] += [0.2, 0.0, 0.0]
    result = run_neb(initial, final, tiny_si_model, NEBSettings(images=1, steps=2, relax_endpoints=False), tmp_path / "band.xyz")
    model = PesmithCalculator.from_file(tiny_si_model)
    assert result.steps == 2 and len(result.energies) == 3
    assert result.energies[[0, -1]] == pytest.approx([model.get_potential_energy(initial), model.get_potential_energy(final)], abs=1e-6)
    middle = ase.io.read(tmp_path / "band.xyz", index=1)
    assert result.energies[1] == pytest.approx(model.get_potential_energy(middle), abs=1e-6)


def test_a_band_resumed_with_no_steps_left_reports_its_state(band, tmp_path):
    path = tmp_path / "band.xyz"
    shutil.copy(band.band, path)
    again = run_neb(*tutorial_endpoints(), EMT(), NEBSettings(images=3, fmax=FMAX, steps=band.steps), path, resume=True)
    assert again.converged and again.steps == band.steps and again.max_force == pytest.approx(band.max_force, abs=1e-6)  # positions stored to 1e-8 Å
    assert again.energies == pytest.approx(band.energies, abs=1e-6)
