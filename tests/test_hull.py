"""Formation energies and the lower convex hull (`pesmith hull`)."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pesmith import cli
from pesmith.errors import DataError
from pesmith.registry import Registry
from pesmith.search.hull import formation_energies, hull_energy, voltage_profile


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


def brute_force_lower_hull(x: np.ndarray, e_f: np.ndarray, at: float) -> float:
    """Lowest value at ``at`` of any point there or any segment between two points around it."""
    px, pe = np.r_[x, 0.0, 1.0], np.r_[e_f, 0.0, 0.0]
    best = min([e for xi, e in zip(px, pe) if xi == at], default=np.inf)
    for i in range(len(px)):
        for j in range(len(px)):
            if px[i] < at < px[j]:
                best = min(best, pe[i] + (pe[j] - pe[i]) * (at - px[i]) / (px[j] - px[i]))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_hull_equals_brute_force_lower_envelope(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 13, size=25) / 12  # repeated compositions and the end points included
    e_f = rng.uniform(-0.4, 0.1, size=25)
    hull = hull_energy(x, e_f)
    for at in np.r_[x, np.linspace(0, 1, 37)]:
        assert hull(at) == pytest.approx(brute_force_lower_hull(x, e_f, at), abs=1e-12)


def test_hull_of_collinear_points_is_their_line():
    hull = hull_energy([0.25, 0.5, 0.75], [0.0, 0.0, 0.0])
    assert [hull(v) for v in (0.0, 0.5, 1.0)] == [0.0, 0.0, 0.0]


def test_missing_element_and_foreign_element_are_named():
    with pytest.raises(DataError, match="no pure Si structure"):
        formation_energies([cell("Li2"), cell("LiSi")], [-4.0, -7.0])
    with pytest.raises(DataError, match=r"contains \['Cu'\]"):
        formation_energies([cell("Li2"), cell("Si2"), cell("LiCu")], [-4.0, -10.0, -3.0])


def test_hull_command_prints_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
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


def write_labeled(path, pairs) -> None:
    structures = []
    for symbols, energy in pairs:
        atoms = cell(symbols)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=[[0, 0, 0]] * len(atoms))
        structures.append(atoms)
    ase.io.write(path, structures, format="extxyz")


def test_hull_without_pure_si_tells_the_option_that_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    data = tmp_path / "no_si.xyz"
    write_labeled(data, [("Li2", -4.0), ("LiSi", -7.6)])
    code = cli.main(["hull", str(data)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert "no pure Si structure" in err and "--references Si=" in err
    code = cli.main(["hull", str(data), "--references", "Si=-5.0", "--json", str(tmp_path / "hull.json")])
    assert code == 0
    table = {row["formula"]: row for row in json.loads((tmp_path / "hull.json").read_text())}
    assert table["LiSi"]["formation_energy"] == pytest.approx(-0.3)  # (-7.6 + 2 + 5) / 2, e_Li from Li2


def test_hull_references_replace_the_pure_structures(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    data = tmp_path / "labeled.xyz"
    write_labeled(data, [("Li2", -4.0), ("Si2", -10.0), ("LiSi", -7.6)])
    assert cli.main(["hull", str(data), "--references", "Li=-1.90,Si=-5.42", "--json", str(tmp_path / "h.json")]) == 0
    table = {row["formula"]: row for row in json.loads((tmp_path / "h.json").read_text())}
    assert table["LiSi"]["formation_energy"] == pytest.approx((-7.6 + 1.90 + 5.42) / 2)


@pytest.mark.parametrize("text,message", [("Li:-1.9", "expected ELEMENT=ENERGY pairs"), ("Cu=-3.7", "names ['Cu']")])
def test_hull_bad_references_are_one_line(tmp_path, capsys, monkeypatch, text, message):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    data = tmp_path / "labeled.xyz"
    write_labeled(data, [("Li2", -4.0), ("Si2", -10.0)])
    code = cli.main(["hull", str(data), "--references", text])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err


def random_lisi_set(seed: int):
    """Pure Li and Si and random Li_a Si_b compositions with random formation energies (eV/atom)."""
    rng = np.random.default_rng(seed)
    structures = [Atoms("Li2"), Atoms("Si2")]
    energies = [2 * -1.9, 2 * -5.4]
    for _ in range(25):
        n_li, n_si = int(rng.integers(1, 16)), int(rng.integers(1, 8))
        n = n_li + n_si
        structures.append(Atoms(f"Li{n_li}Si{n_si}"))
        energies.append(n_li * -1.9 + n_si * -5.4 + n * rng.uniform(-0.3, 0.05))
    return structures, energies


@pytest.mark.parametrize("seed", range(5))
def test_hull_and_voltage_agree_with_ase_phasediagram(seed):
    from ase.phasediagram import PhaseDiagram

    structures, energies = random_lisi_set(seed)
    entries = formation_energies(structures, energies)
    diagram = PhaseDiagram([(a.get_chemical_formula(), e) for a, e in zip(structures, energies)], verbose=False)
    for atoms, energy, entry in zip(structures, energies, entries):
        decomposition_energy, _, _ = diagram.decompose(atoms.get_chemical_formula())
        assert entry.e_above_hull == pytest.approx((energy - decomposition_energy) / len(atoms), abs=1e-6)
    # voltages from ase's energies of the hull vertices, per Si: -(E(x2) - E(x1) - (x2 - x1) e_Li) / (x2 - x1)
    per_si = {0.0: -5.4}
    for atoms, entry in zip(structures, entries):
        n_si = int((atoms.numbers == 14).sum())
        if entry.on_hull and n_si:
            x = round(entry.x / (1 - entry.x), 10)
            per_si[x] = min(per_si.get(x, np.inf), diagram.decompose(atoms.get_chemical_formula())[0] / n_si)
    hull_x = sorted(per_si)
    expected = [-(per_si[b] - per_si[a] - (b - a) * -1.9) / (b - a) for a, b in zip(hull_x, hull_x[1:])]
    profile = voltage_profile(entries)
    assert [(v.x_low, v.x_high) for v in profile] == list(zip(hull_x, hull_x[1:]))
    np.testing.assert_allclose([v.voltage for v in profile], expected, atol=1e-6)
    assert all(a.voltage >= b.voltage - 1e-9 for a, b in zip(profile, profile[1:]))  # convex hull: falling voltage


def test_amorphous_hull_voltages_and_the_baseline_comparison(tmp_path):
    """Search structures at x = 3, 2.25, 1.5 and baseline ones: each gets its own hull with the
    elemental crystals, and the voltage is -d(ΔE per Si)/dx between neighbouring vertices."""
    from pesmith.search.phase_diagram import write_phase_diagram

    e_li, e_si = -1.9, -5.4
    kinds_ef = [("crystal", 2, 0, 0.0), ("crystal", 0, 8, 0.0), ("crystal", 15, 4, -0.23), ("start", 12, 4, -0.15), ("step 1", 9, 4, -0.17),
                ("step 2", 6, 4, -0.16), ("baseline", 12, 4, -0.14), ("baseline", 9, 4, -0.18), ("baseline", 6, 4, -0.15)]
    structures, entries = [], []
    for kind, n_li, n_si, e_f in kinds_ef:
        structures.append(cell("Li" * n_li + "Si" * n_si))
        entries.append({"kind": kind, "structure": f"{kind}.xyz", "energy": e_f * (n_li + n_si) + n_li * e_li + n_si * e_si})
    result = write_phase_diagram(tmp_path, entries, structures, [], [])
    # ΔE per Si = (1 + x) E_f: x=1.5 -> -0.4, 2.25 -> -0.5525, 3 -> -0.6 (eV)
    expected = [(0.0, 1.5, 0.4 / 1.5), (1.5, 2.25, 0.1525 / 0.75), (2.25, 3.0, 0.0475 / 0.75)]
    assert [(v["x_low"], v["x_high"]) for v in result["amorphous_voltages"]] == [(a, b) for a, b, _ in expected]
    assert [v["voltage"] for v in result["amorphous_voltages"]] == pytest.approx([v for _, _, v in expected])
    # the baseline's hull: only x = 2.25 (-0.585 per Si) is on it; x = 3 (-0.56) and 1.5 (-0.375) are above
    assert result["baseline_voltages"] == [pytest.approx({"x_low": 0.0, "x_high": 2.25, "voltage": 0.585 / 2.25})]
    comparison = {c["li_per_si"]: c["search_minus_baseline_meV_per_atom"] for c in result["search_vs_baseline"]}
    assert comparison == pytest.approx({3.0: -10.0, 2.25: 10.0, 1.5: -10.0})
    by_origin = {c["li_per_si"]: c["search_lowest_by_origin"] for c in result["search_vs_baseline"]}
    assert by_origin == {3.0: {"start": pytest.approx(-0.15)}, 2.25: {"step 1": pytest.approx(-0.17)}, 1.5: {"step 2": pytest.approx(-0.16)}}
    rows = {(r["kind"], r["li_per_si"]): r for r in result["entries"]}
    assert rows[("step 1", 2.25)]["e_above_amorphous_hull_eV_per_atom"] == pytest.approx(0.0, abs=1e-9)
    assert rows[("baseline", 3.0)]["e_above_amorphous_hull_eV_per_atom"] > 0  # above the baseline's own hull
    written = json.loads((tmp_path / "hull.json").read_text())
    assert written["amorphous_voltages"] == result["amorphous_voltages"]
    header, *lines = (tmp_path / "voltage.csv").read_text().splitlines()
    assert header == "hull,x_low,x_high,voltage" and [line.split(",")[0] for line in lines].count("amorphous") == 3
