"""Opt-in float32 inference of the calculator against float64, on a trained Si NN + ACSF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from pesmith.calculator import PesmithCalculator
from pesmith.errors import ConfigError
from pesmith.model_file import load_potential
from pesmith.precision import inference_copy


def rattled_si(repeat: int, seed: int = 0):
    """Diamond Si, ``repeat`` cubic cells along each axis, rattled by 0.1 Å."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    atoms.rattle(0.1, rng=np.random.default_rng(seed))
    return atoms


def labels(atoms, calculator) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Energy (eV), per-atom energies (eV), forces (eV/Å) and stress (eV/Å^3) of ``atoms``."""
    work = atoms.copy()
    work.calc = calculator
    return work.get_potential_energy(), work.get_potential_energies(), work.get_forces(), work.get_stress()


@pytest.fixture(scope="module")
def calculators(si_model_path) -> tuple[PesmithCalculator, PesmithCalculator]:
    """float32 and float64 calculators of the session's trained Si NN + ACSF."""
    potential, _ = load_potential(si_model_path)
    return PesmithCalculator(potential, dtype="float32"), PesmithCalculator(potential)


def test_float32_energies_within_1e_6_eV_per_atom_and_forces_within_1e_5_eV_per_A_on_64_atom_cells(calculators):
    """Measured: 1.8e-7 eV/atom, forces 4.6e-6 eV/Å, stress 3.7e-8 eV/Å^3 apart (a 1,000-atom
    cell: 1.3e-7 eV/atom, 6.7e-6 eV/Å). The atomic energies themselves differ by up to 1.1e-6
    eV (1.7e-6 on the 1,000 atoms): the network reads features normalized in float32,
    (f - mean) / scale, whose cancellation costs about one digit; their errors partly cancel in
    the sum."""
    single, double = calculators
    cube = rattled_si(2)
    strained = cube.copy()
    strained.set_cell(cube.cell.array @ (np.eye(3) + np.diag([0.03, -0.01, 0.0])), scale_atoms=True)
    for atoms in (cube, strained):
        (e32, a32, f32, s32), (e64, a64, f64, s64) = labels(atoms, single), labels(atoms, double)
        assert isinstance(e32, float) and f32.dtype == np.float64 and s32.dtype == np.float64
        assert e32 != e64  # float32 was used
        assert abs(e32 - e64) / len(atoms) < 1e-6
        assert np.abs(a32 - a64).max() < 2e-6
        assert np.abs(f32 - f64).max() < 1e-5
        assert np.abs(s32 - s64).max() < 1e-7


def test_float32_on_the_2_atom_primitive_cell_is_up_to_1e_6_eV_per_atom_off(calculators):
    """Its two atoms are equivalent, so their float32 errors add instead of averaging out:
    measured 7.5e-7 eV/atom on this rattle, 1.0e-6 on another (one float32 step of a normalized
    feature, see above); forces 5.8e-7 eV/Å, stress 2.5e-7 eV/Å^3. Bounded at 2e-6 eV/atom,
    1e-5 eV/Å and 6e-7 eV/Å^3."""
    single, double = calculators
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, rng=np.random.default_rng(1))
    (e32, _, f32, s32), (e64, _, f64, s64) = labels(atoms, single), labels(atoms, double)
    assert abs(e32 - e64) / len(atoms) < 2e-6
    assert np.abs(f32 - f64).max() < 1e-5
    assert np.abs(s32 - s64).max() < 6e-7


def test_the_float32_copy_computes_its_terms_in_float32_and_leaves_the_potential_alone(si_model_path):
    potential, _ = load_potential(si_model_path)
    single = inference_copy(potential, "float32")
    assert inference_copy(potential, "float64") is potential
    assert single.terms[0].compute_dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in single.terms[0].model.parameters())
    assert single.terms[0].descriptor.g2.dtype == torch.float32
    assert potential.terms[0].compute_dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in potential.terms[0].model.parameters())
    assert single.reference_table.dtype == torch.float64


def test_an_unknown_dtype_is_a_config_error_naming_the_option(si_model_path):
    potential, _ = load_potential(si_model_path)
    with pytest.raises(ConfigError, match="^dtype: 'float16' .* float64, float32$") as error:
        PesmithCalculator(potential, dtype="float16")
    assert "\n" not in str(error.value)


def test_a_term_that_cannot_compute_in_float32_is_refused_by_name(si_model_path):
    """The float32 copy's forward calls the float64 original's through a closure (not copied)."""
    potential, _ = load_potential(si_model_path)
    model = potential.terms[0].model
    model_forward = model.forward
    model.forward = lambda features, numbers: model_forward(features.double(), numbers)  # returns float64
    with pytest.raises(ConfigError, match="^dtype: the model BehlerParrinello does not compute in float32 \\(it returned float64\\); use dtype float64"):
        PesmithCalculator(potential, dtype="float32")
    model.forward = model_forward
    descriptor = potential.terms[0].descriptor
    forward = descriptor.forward
    descriptor.forward = lambda *args: forward(*args)  # float32 vectors into float64 constants: torch refuses an in-place sum
    with pytest.raises(ConfigError, match="^dtype: the term ACSF \\+ BehlerParrinello fails in float32 \\(RuntimeError: .*use dtype float64"):
        PesmithCalculator(potential, dtype="float32")


@pytest.mark.parametrize("config", ["lisi_nn_chebyshev.yaml", "si_nn_soap.yaml", "lisi_nn_bispectrum.yaml"])
def test_float32_of_the_chebyshev_and_soap_descriptors_with_random_weights(config):
    """The descriptor and network of a shipped config for Li and Si, random weights (seed 0), on
    a 60-atom amorphous Li-Si cell. Measured: Chebyshev 1.3e-8 eV/atom and 5.0e-7 eV/Å, SOAP
    2.0e-7 eV/atom and 4.2e-6 eV/Å, bispectrum (twojmax 6, components up to ~70) 1.9e-8 eV/atom
    and 9.6e-6 eV/Å; bounded at 1e-6 eV/atom and 1e-5 eV/Å."""
    from conftest import ROOT, load_script
    from pesmith.testing import amorphous_lisi

    torch.manual_seed(0)
    potential = load_script("bench_md").build_potential(None, str(ROOT / "configs" / config))
    atoms = amorphous_lisi(60)
    (e32, _, f32, _), (e64, _, f64, _) = labels(atoms, PesmithCalculator(potential, dtype="float32")), labels(atoms, PesmithCalculator(potential))
    assert e32 != e64
    assert abs(e32 - e64) / len(atoms) < 1e-6
    assert np.abs(f32 - f64).max() < 1e-5


def test_load_calculator_passes_skin_and_dtype(si_model_path):
    import pesmith

    calculator = pesmith.load_calculator(str(si_model_path), skin=0.5, dtype="float32")
    assert calculator.neighbors.skin == 0.5 and calculator.dtype == "float32"
    assert calculator.evaluated.terms[0].compute_dtype == torch.float32
    assert calculator.potential.terms[0].compute_dtype == torch.float64
