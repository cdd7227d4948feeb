"""Contract checks that every descriptor and model plugin passes, ours and outside ones.

Call them from your own tests or scripts (they raise ``AssertionError`` with the numbers on
failure, and on success print what they checked, with the largest differences found)::

    from pesmith.testing import check_descriptor, check_model
    check_descriptor(MyDescriptor(species=["Li", "Si"], cutoff=5.0))
    check_model(MyModel, descriptor)

Printing on success is deliberate here (the library otherwise logs): these are called by hand,
and a silent pass cannot be told from a check that never ran; ``verbose=False`` silences them.

Energies are ``E = sum_i w . G_i`` with a fixed random ``w`` for descriptors alone, so the
checks exercise the descriptor's autograd path exactly as a model does.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.geometry import get_distances

from .descriptor import Descriptor
from .jacobian_store import feature_jacobian
from .grad import forces_and_stress
from .model import Model
from .potential import ENERGY, FORCES, STRESS, Potential
from .structures import DTYPE, build_batch


def random_positions(cell: np.ndarray, n_atoms: int, min_distance: float, rng: np.random.Generator) -> np.ndarray:
    """(n_atoms, 3) positions (Å) in a periodic ``cell`` by random sequential addition: a trial
    point is kept only if it is at least ``min_distance`` (Å) from every atom placed before."""
    positions: list[np.ndarray] = []
    while len(positions) < n_atoms:
        trial = rng.uniform(0, 1, 3) @ cell
        if positions and get_distances(trial, np.array(positions), cell=cell, pbc=True)[1].min() < min_distance:
            continue
        positions.append(trial)
    return np.array(positions)


def sample_structure(species: tuple[str, ...], cutoff: float, seed: int = 0, n_atoms: int = 8) -> Atoms:
    """A random triclinic periodic cell (about 18 Å^3 per atom, no two atoms closer than 1.9 Å)
    whose cell vectors are shorter than twice ``cutoff`` (Å)."""
    rng = np.random.default_rng(seed)
    length = min(1.9 * cutoff, max(4.0, (n_atoms * 18.0) ** (1 / 3)))
    cell = np.diag([length] * 3) + rng.uniform(-0.12, 0.12, (3, 3)) * length
    symbols = [species[i % len(species)] for i in range(n_atoms)]
    return Atoms(symbols=symbols, positions=random_positions(cell, n_atoms, 1.9, rng), cell=cell, pbc=True)


def amorphous_lisi(n_atoms: int, volume_per_atom: float = 15.5, seed: int = 0, tilt: float = 0.0) -> Atoms:
    """A random periodic Li-Si cell (Li:Si = 15:4, as Li15Si4; ``volume_per_atom`` in Å^3) with
    no two atoms closer than 2.1 Å. ``tilt`` > 0 shears the cube by up to that fraction of its
    edge, giving a triclinic cell."""
    rng = np.random.default_rng(seed)
    length = (n_atoms * volume_per_atom) ** (1 / 3)
    cell = np.eye(3) * length + rng.uniform(-tilt, tilt, (3, 3)) * length * (1 - np.eye(3))
    positions = random_positions(cell, n_atoms, 2.1, rng)
    symbols = ["Si" if i % 19 < 4 else "Li" for i in range(n_atoms)]
    return Atoms(symbols, positions=positions, cell=cell, pbc=True)


def distorted_lisi(repeat: tuple[int, int, int] = (1, 1, 1), seed: int = 0) -> Atoms:
    """A triclinic diamond-Si cell (``repeat`` conventional cells, cell vectors perturbed by
    0.25 Å, atoms rattled by 0.1 Å) with a third of the Si replaced by Li."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", 5.43, cubic=True) * repeat
    atoms.symbols[rng.choice(len(atoms), len(atoms) // 3, replace=False)] = "Li"
    atoms.set_cell(atoms.cell.array + rng.normal(0, 0.25, (3, 3)), scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def linear_energy(descriptor: Descriptor, seed: int = 0):
    """An energy function ``E(atoms_batch) = sum_i w . G_i`` with fixed random ``w``."""
    weights = torch.as_tensor(np.random.default_rng(seed).normal(size=descriptor.n_features), dtype=DTYPE)

    def energy(batch, vectors):
        features = descriptor(batch.numbers, batch.edge_index, vectors)
        per_atom = features @ weights  # (n_atoms,)
        return torch.zeros(batch.n_structures, dtype=DTYPE).index_add(0, batch.structure_index, per_atom)

    return energy


def energy_forces_stress(energy_fn, atoms: Atoms, cutoff: float) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Energy (eV), forces (eV/Å) and, for a fully periodic cell, stress (eV/Å^3) of one structure."""
    batch = build_batch([atoms], cutoff)
    vectors = batch.edge_vectors().detach().requires_grad_(True)
    energy = energy_fn(batch, vectors)
    periodic = bool(atoms.pbc.all())
    forces, stress = forces_and_stress(energy, vectors, batch, stress=periodic)
    return energy.item(), forces.detach().numpy(), stress[0].detach().numpy() if periodic else None


def potential_energy(potential: Potential):
    """The energy function of a :class:`Potential`, for :func:`check_gradients`."""
    return lambda batch, vectors: potential.energy(batch, vectors)[ENERGY]


def check_gradients(
    descriptor: Descriptor, atoms: Atoms, step: float = 1e-4, atol: float = 1e-6, energy_fn=None
) -> dict[str, float]:
    """Forces equal -dE/dr and, for periodic cells, stress equals (1/V) dE/d(strain), by central
    differences (step in Å and strain). ``energy_fn(batch, vectors)`` defaults to a linear readout.
    Returns the largest differences: ``force`` (eV/Å) and, for periodic cells, ``stress`` (eV/Å^3)."""
    energy_fn = energy_fn or linear_energy(descriptor)
    _, forces, stress = energy_forces_stress(energy_fn, atoms, descriptor.cutoff)

    def energy_of(a: Atoms) -> float:
        return energy_forces_stress(energy_fn, a, descriptor.cutoff)[0]

    numeric = np.zeros_like(forces)
    for i in range(len(atoms)):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, c] += step
            minus.positions[i, c] -= step
            numeric[i, c] = -(energy_of(plus) - energy_of(minus)) / (2 * step)
    error = np.abs(forces - numeric).max()
    assert error < atol, f"forces differ from finite differences by {error:.3g} eV/Å (tolerance {atol})"
    errors = {"force": float(error)}
    if stress is None:
        return errors
    volume = atoms.get_volume()
    numeric_stress = np.zeros(6)
    for k, (a, b) in enumerate(((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))):
        direction = np.zeros((3, 3))  # symmetric unit strain: d(strain)/dt
        direction[a, b] += 0.5
        direction[b, a] += 0.5
        energies = []
        for sign in (1, -1):
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * step * direction), scale_atoms=True)
            energies.append(energy_of(strained))
        numeric_stress[k] = (energies[0] - energies[1]) / (2 * step) / volume
    error = np.abs(stress - numeric_stress).max()
    assert error < atol, f"stress differs from finite differences by {error:.3g} eV/Å^3 (tolerance {atol})"
    return errors | {"stress": float(error)}


def check_invariance(descriptor: Descriptor, atoms: Atoms, atol: float = 1e-10, energy_fn=None) -> float:
    """Energy (eV) unchanged by rotation, translation, permutation and an equivalent cell;
    returns the largest change (eV)."""
    energy_fn = energy_fn or linear_energy(descriptor)
    reference = energy_forces_stress(energy_fn, atoms, descriptor.cutoff)[0]
    rotated = atoms.copy()
    rotated.rotate(37.0, (1.0, 2.0, 3.0), rotate_cell=True)
    translated = atoms.copy()
    translated.translate((0.37, -1.21, 2.05))
    permuted = atoms[np.random.default_rng(1).permutation(len(atoms))]
    equivalent = atoms.copy()
    cell = atoms.cell.array
    equivalent.set_cell(np.array([cell[0], cell[1] + cell[0], cell[2] - cell[1]]), scale_atoms=False)
    equivalent.wrap()
    largest = 0.0
    for name, changed in (("rotation", rotated), ("translation", translated), ("permutation", permuted),
                          ("equivalent cell", equivalent)):
        energy = energy_forces_stress(energy_fn, changed, descriptor.cutoff)[0]
        assert abs(energy - reference) < atol, f"energy changes by {energy - reference:.3g} eV under {name}"
        largest = max(largest, abs(energy - reference))
    return largest


def check_batching(descriptor: Descriptor, structures: list[Atoms], atol: float = 1e-10) -> dict[str, float]:
    """Features of a batch equal those of each structure alone; the stored Jacobian equals autograd.
    Returns the largest differences: ``batch`` (features) and ``jacobian`` (readout gradients)."""
    batch = build_batch(structures, descriptor.cutoff)
    check_config_round_trip(descriptor, batch)
    together = descriptor.featurize(batch).detach()
    alone = torch.cat([descriptor.featurize(build_batch([a], descriptor.cutoff)).detach() for a in structures])
    assert together.shape == (len(alone), descriptor.n_features), f"features have shape {tuple(together.shape)}"
    assert torch.allclose(together, alone, atol=atol, rtol=0), "batched features differ from single ones"
    assert torch.isfinite(together).all() and together.dtype == DTYPE, "features must be finite float64"
    assert len(descriptor.describe()) == descriptor.n_features, "describe() must name every feature"
    _, direct, jacobian = features_gradients_jacobian(descriptor, structures)
    chained = torch.einsum("f,efc->ec", readout_weights(descriptor), jacobian)
    assert torch.allclose(direct, chained, atol=atol), "feature Jacobian disagrees with autograd"
    return {"batch": float((together - alone).abs().max()), "jacobian": float((direct - chained).abs().max()) if direct.numel() else 0.0}


def check_config_round_trip(descriptor: Descriptor, batch) -> None:
    """``type(descriptor)(**descriptor.get_config())`` builds and gives the same number of features
    and the same features on ``batch``; on failure the message names the keys ``get_config`` drops."""
    config = descriptor.get_config()
    try:
        rebuilt = type(descriptor)(**config)
    except TypeError as exc:
        raise AssertionError(f"get_config does not round-trip: {dropped_keys(descriptor, config)} ({exc})") from None
    if rebuilt.n_features == descriptor.n_features and torch.allclose(
        rebuilt.featurize(batch).detach(), descriptor.featurize(batch).detach()
    ):
        return
    raise AssertionError(f"get_config does not round-trip: {dropped_keys(descriptor, config)} (get_config() = {config})")


def dropped_keys(descriptor: Descriptor, config: dict) -> str:
    """"key a, b missing" for the constructor arguments absent from ``config``: those without a
    default, or whose attribute of the same name on ``descriptor`` differs from the default (all
    absent ones when no attribute tells)."""
    parameters = inspect.signature(type(descriptor).__init__).parameters
    absent = [
        name for name, p in parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in config
    ]

    def set_by_user(name: str) -> bool:
        default = parameters[name].default
        if default is inspect.Parameter.empty:
            return True
        try:
            return hasattr(descriptor, name) and bool(getattr(descriptor, name) != default)
        except (TypeError, ValueError, RuntimeError):  # arrays, tensors: no single truth value
            return True

    names = [name for name in absent if set_by_user(name)] or absent
    return f"key {', '.join(names)} missing" if names else "no key missing, but the rebuilt descriptor differs"


def readout_weights(descriptor: Descriptor) -> torch.Tensor:
    """Fixed weights ``(n_features,)`` of the linear readout the gradient checks use."""
    return torch.linspace(-1, 1, descriptor.n_features, dtype=DTYPE)


def features_gradients_jacobian(descriptor: Descriptor, structures: Atoms | list[Atoms]) -> list[torch.Tensor]:
    """Features, the gradient of :func:`readout_weights` times them with respect to the edge
    vectors (autograd), and the Jacobian of :func:`pesmith.jacobian_store.feature_jacobian`, for one
    structure or a batch: the autograd and stored-Jacobian routes that must agree, and what must
    not change when an implementation detail (such as a chunk size) does."""
    structures = [structures] if isinstance(structures, Atoms) else structures
    _, jacobian, batch = feature_jacobian(descriptor, structures)
    vectors = batch.edge_vectors().detach().requires_grad_(True)
    features = descriptor(batch.numbers, batch.edge_index, vectors)
    (gradients,) = torch.autograd.grad((features @ readout_weights(descriptor)).sum(), vectors)
    return [features.detach(), gradients, jacobian]


def check_descriptor(descriptor: Descriptor, seed: int = 0, verbose: bool = True) -> str:
    """Run every descriptor contract check on random triclinic periodic cells.

    Returns (and with ``verbose`` prints) what was checked, with the largest differences found.
    """
    structures = [sample_structure(descriptor.species, descriptor.cutoff, seed + k, n_atoms=6 + k) for k in range(3)]
    batching = check_batching(descriptor, structures)
    invariance = check_invariance(descriptor, structures[0])
    gradients = check_gradients(descriptor, structures[0])
    sizes = ", ".join(str(len(a)) for a in structures)
    summary = "\n".join([
        f"check_descriptor passed: {type(descriptor).__name__}, species {', '.join(descriptor.species)},"
        f" {descriptor.n_features} features, cutoff {descriptor.cutoff:g} Å, random triclinic cells of {sizes} atoms (seed {seed})",
        "  get_config round trip: the rebuilt descriptor gives the same features",
        f"  batch equals single: features finite float64, largest difference {batching['batch']:.2g}; describe() names all {descriptor.n_features}",
        f"  features_and_jacobian equals autograd: largest difference {batching['jacobian']:.2g}",
        f"  invariance (rotation, translation, permutation, equivalent cell): energy changes at most {invariance:.2g} eV",
        f"  forces against finite differences: largest difference {gradients['force']:.2g} eV/Å",
        f"  stress against finite differences: largest difference {gradients['stress']:.2g} eV/Å^3",
    ])
    if verbose:
        print(summary)
    return summary


def check_model(model: Model, descriptor: Descriptor, seed: int = 0, atol: float = 1e-10, verbose: bool = True) -> str:
    """A model predicts the same energies, forces and stress after save -> load (and, if it has
    one, the same force uncertainty, finite, non-negative, one per force component).

    Returns (and with ``verbose`` prints) what was checked, with the largest differences found.
    """
    from .model_file import load_potential, save_potential

    potential = Potential(descriptor, model)
    structures = [sample_structure(descriptor.species, descriptor.cutoff, seed + k) for k in range(2)]
    before = potential(build_batch(structures, descriptor.cutoff), forces=True, stress=True)
    with tempfile.TemporaryDirectory() as folder:
        path = save_potential(potential, Path(folder) / "model.pt")
        loaded, _ = load_potential(path)
    after = loaded(build_batch(structures, descriptor.cutoff), forces=True, stress=True)
    for key in (ENERGY, FORCES, STRESS):
        assert torch.allclose(before[key], after[key], atol=atol), f"{key} changes after save -> load"
    change = {key: float((before[key] - after[key]).abs().max()) for key in (ENERGY, FORCES, STRESS)}
    if model.has_forces_std:
        batch = build_batch(structures, descriptor.cutoff)
        std, std_loaded = potential.forces_std(batch), loaded.forces_std(batch)
        assert std.shape == (batch.n_atoms, 3), f"forces_std has shape {tuple(std.shape)}, expected ({batch.n_atoms}, 3)"
        assert bool(torch.isfinite(std).all()) and bool((std >= 0).all()), "forces_std must be finite and non-negative"
        assert torch.allclose(std, std_loaded, atol=atol), "forces_std changes after save -> load"
    summary = (
        f"check_model passed: {type(model).__name__} on {type(descriptor).__name__}, save -> load of"
        f" {len(structures)} random triclinic cells (seed {seed}) predicts the same energy (largest change"
        f" {change[ENERGY]:.2g} eV), forces ({change[FORCES]:.2g} eV/Å) and stress ({change[STRESS]:.2g} eV/Å^3)"
    )
    if verbose:
        print(summary)
    return summary
