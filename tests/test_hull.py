"""Formation energies and the lower convex hull (`pesmith hull`)."""

from __future__ import annotations

import json

import ase.io
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pesmith import cli
from pesmith.errors import DataError
from pesmith.registry import Registry
from pesmith.search.hull import formation_energies, hull_energy


def cell(symbols: str) -> Atoms:
    return Atoms(symbols, positions=[[i, 0, 0] for i in range(len(Atoms(symbols)))], cell=[10, 10, 10], pbc=True)


def test_formation_energies_and_distance_to_the_hull():
    structures = [cell("Li2"), cell("Li"), cell("Si2"), cell("LiSi"), cell("Li3Si"), cell("LiSi3")]
    # eV: e_Li = -2 (the lower of -2 and -1.5 per atom), e_Si = -5
    energies = [-4.0, -1.5, -10.0, -7.0 - 2 * 0.3, 4 * -2.75 - 4 * 0.1, 4 * -4.25 - 4 * 0.05]
    entries = formation_energies(structures, energies)
    by_formula = {e.formula: e for e in entries}
    assert by_formula["Li"].formation_energy == pytest.approx(0.5)
    assert by_formula["LiSi"].formation_energy == pytest.approx(-0.3)
    assert by_formula["LiSi"].on_hull and by_formula["Li2"].on_hull and by_formula["Si2"].on_hull
    # Li3Si (x=0.75): hull between LiSi (-0.3) and Li (0) is -0.15 there; it sits at -0.1
    assert by_formula["Li3Si"].e_above_hull == pytest.approx(0.05)
    assert by_formula["LiSi3"].e_above_hull == pytest.approx(0.1)
    assert by_formula["Li"].e_above_hull == pytest.approx(0.5)


def test_hull_of_points_above_zero_is_the_tie_line():
    hull = hull_energy([0.5], [0.2])
    assert hull(0.5) == 0.0


def test_missing_element_and_foreign_element_are_named():
    with pytest.raises(DataError, match="no pure Si structure"):
        formation_energies([cell("Li2"), cell("LiSi")], [-4.0, -7.0])
    with pytest.raises(DataError, match=r"contains \['Cu'\]"):
        formation_energies([cell("Li2"), cell("Si2"), cell("LiCu")], [-4.0, -10.0, -3.0])


def test_hull_command_prints_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "default_registry", lambda: Registry(entry_points=False))
    structures = []
    for symbols, energy in (("Li2", -4.0), ("Si2", -10.0), ("LiSi", -7.6)):
        atoms = cell(symbols)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=[[0, 0, 0]] * len(atoms))
        structures.append(atoms)
    ase.io.write(tmp_path / "labeled.xyz", structures, format="extxyz")
    code = cli.main(["hull", str(tmp_path / "labeled.xyz"), "--json", str(tmp_path / "hull.json")])
    out = capsys.readouterr().out
    assert code == 0 and "LiSi" in out and "-0.3000" in out
    table = json.loads((tmp_path / "hull.json").read_text())
    assert {row["formula"]: row["on_hull"] for row in table} == {"Li2": True, "Si2": True, "LiSi": True}
