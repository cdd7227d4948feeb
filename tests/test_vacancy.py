"""pesmith vacancy / pesmith.simulate.vacancy: E_f = E[relaxed defect] - E[relaxed bulk] + mu
equals the same sum done by hand with ASE's optimizers (EMT fcc Al, Morse bcc Li), is positive,
and is lowered by the relaxation; equivalent sites are grouped; bad input is one line, exit 2."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase.build import bcc100, bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from pesmith import cli
from pesmith.errors import DataError
from pesmith.plugins.references.morse import MorseCalculator
from pesmith.simulate.relax import RelaxSettings
from pesmith.simulate.vacancy import equivalent_sites, vacancy_formation

FMAX = 1e-3  # eV/Å, tight so that two optimizers agree to well below 1 meV


def relaxed_crystal(symbol: str, calculator, **kwargs):
    """ASE's reference crystal of ``symbol``, cell and positions relaxed by hand (BFGS on a
    Fréchet cell filter), and its energy per atom (eV)."""
    crystal = bulk(symbol, **kwargs)
    crystal.calc = calculator
    BFGS(FrechetCellFilter(crystal), logfile=None).run(fmax=FMAX / 10, steps=1000)
    return crystal, crystal.get_potential_energy() / len(crystal)


def by_hand(supercell, site: int, calculator, mu: float) -> tuple[float, float]:
    """E_f (eV) of a vacancy at ``site``, relaxed (BFGS, positions, fixed cell), and unrelaxed."""
    perfect = supercell.copy()
    perfect.calc = calculator
    BFGS(perfect, logfile=None).run(fmax=FMAX)
    e_bulk = perfect.get_potential_energy()
    defect = perfect.copy()
    del defect[site]
    defect.calc = calculator
    unrelaxed = defect.get_potential_energy() - e_bulk + mu
    BFGS(defect, logfile=None).run(fmax=FMAX, steps=1000)
    return defect.get_potential_energy() - e_bulk + mu, unrelaxed


def test_emt_aluminium_vacancy_equals_the_hand_computation():
    crystal, mu = relaxed_crystal("Al", EMT())
    a = crystal.cell.cellpar()[0] * np.sqrt(2)  # primitive fcc cell edge -> cubic lattice constant
    supercell = bulk("Al", "fcc", a=a, cubic=True).repeat(3)  # 108 atoms at EMT's lattice constant
    [vacancy] = vacancy_formation(supercell, EMT(), element="Al", settings=RelaxSettings(fmax=FMAX, steps=1000))
    relaxed, unrelaxed = by_hand(supercell, vacancy.site, EMT(), mu)
    assert vacancy.multiplicity == 108  # every fcc site is equivalent
    assert vacancy.chemical_potential == pytest.approx(mu, abs=1e-5)
    assert vacancy.bulk_energy / len(supercell) == pytest.approx(mu, abs=1e-5)  # the supercell is the relaxed crystal
    assert vacancy.formation_energy == pytest.approx(relaxed, abs=1e-3)
    assert 0 < vacancy.formation_energy < unrelaxed  # relaxing the neighbours lowers it


@pytest.fixture(scope="module")
def li_bulk(tmp_path_factory):
    """54-atom bcc Li at the Morse reference's own lattice constant, written to an extxyz file."""
    crystal, _ = relaxed_crystal("Li", MorseCalculator(), cubic=True)
    path = tmp_path_factory.mktemp("li") / "li54.xyz"
    ase.io.write(path, crystal.repeat(3), format="extxyz")
    return path


def test_vacancy_verb_with_the_morse_reference_on_bcc_li(li_bulk, tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(["vacancy", str(li_bulk), "--reference", "morse", "--fmax", str(FMAX), "--output", str(output)]) == 0
    [row] = json.loads((output / "vacancies.json").read_text())["vacancies"]
    supercell = ase.io.read(li_bulk)
    _, mu = relaxed_crystal("Li", MorseCalculator())  # the default mu_Li: relaxed bcc Li
    relaxed, _ = by_hand(supercell, row["site"], MorseCalculator(), mu)
    assert row["multiplicity"] == 54 and row["chemical_potential"] == pytest.approx(mu, abs=1e-5)
    assert row["formation_energy"] == pytest.approx(relaxed, abs=1e-3) and row["formation_energy"] > 0
    csv = (output / "vacancies.csv").read_text().splitlines()
    assert csv[0].startswith("site,element,multiplicity,formation_energy") and len(csv) == 2
    assert "E_f" in capsys.readouterr().out


def test_a_given_mu_li_and_sites_shift_e_f_by_mu(li_bulk, tmp_path):
    output = tmp_path / "out"
    assert cli.main(["vacancy", str(li_bulk), "--reference", "morse", "--fmax", str(FMAX), "--mu-li", "-1.5", "--sites", "0,17", "--output", str(output)]) == 0
    rows = json.loads((output / "vacancies.json").read_text())["vacancies"]
    assert [row["site"] for row in rows] == [0, 17]
    supercell = ase.io.read(li_bulk)
    relaxed, _ = by_hand(supercell, 17, MorseCalculator(), -1.5)
    assert [row["formation_energy"] for row in rows] == pytest.approx([relaxed, relaxed], abs=1e-3)  # equivalent sites


def test_equivalent_sites_of_a_slab_are_its_surface_and_inner_layers():
    slab = bcc100("Li", size=(2, 2, 4), vacuum=6.0)
    classes = equivalent_sites(slab, "Li")
    assert sorted(map(len, classes)) == [8, 8]
    heights = slab.positions[:, 2]
    surface = {i for i, z in enumerate(heights) if min(abs(z - heights.min()), abs(z - heights.max())) < 0.1}
    assert set(classes[0]) == surface or set(classes[1]) == surface


def test_a_structure_without_li_is_one_line(tmp_path, capsys):
    path = tmp_path / "al.xyz"
    ase.io.write(path, bulk("Al", "fcc", cubic=True), format="extxyz")
    assert cli.main(["vacancy", str(path), "--reference", "morse", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "has no Li atom" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_site_that_is_not_li_is_refused(li_bulk, tmp_path, capsys):
    with pytest.raises(DataError, match="site 99 .* out of range"):
        vacancy_formation(ase.io.read(li_bulk), MorseCalculator(), sites=[99])
    assert cli.main(["vacancy", str(li_bulk), "--reference", "morse", "--sites", "1,x", "--output", str(tmp_path)]) == 2
    assert "--sites '1,x'" in capsys.readouterr().err


def test_a_calculator_without_li_parameters_is_one_line(li_bulk, tmp_path, capsys):
    emt = ["--reference", "ase", "--option", "calculator=ase.calculators.emt.EMT"]
    assert cli.main(["vacancy", str(li_bulk), *emt, "--mu-li", "-1.9", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: relaxing the bulk Li54: NotImplementedError: No EMT-potential for Li"]
