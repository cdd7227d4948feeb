"""``pesmith generate``: an initial Li–Si training set from crystals, labeled by a reference.

The recipe of the LixSi study: each crystal (and its supercells) is scaled isotropically,
rattled, given Li and Si vacancies, cut into surfaces and clusters, and optionally heated
with an existing model (MD snapshots). The structures go to ``<output stem>_structures.xyz``
and are then labeled exactly as ``pesmith label`` does, into the ase.db ``output`` that
``pesmith train`` reads. Everything random draws from one generator seeded by ``seed``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import surface
from pydantic import BaseModel, ConfigDict, Field

from pesmith import ase_files
from pesmith.atomic import atomic_path
from pesmith.config import PluginSettings, check_plugin_options, parse_config, resolve_path
from pesmith.data import read_structures
from pesmith.errors import ConfigError
from pesmith.labeling import LabelConfig, LabelSummary, MapFunction, label_structures
from pesmith.registry import Registry
from pesmith.structures import has_full_cell

log = logging.getLogger(__name__)


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ScaleSettings(Section):
    """Isotropic scaling of each cell's lattice vectors by factors in ``[min, max]``."""

    min: float = Field(0.9, gt=0)
    max: float = Field(1.1, gt=0)
    n: int = Field(5, ge=1, description="evenly spaced factors")


class RattleSettings(Section):
    """Gaussian displacements of every atom."""

    stdev: float = Field(0.05, ge=0, description="Å")
    n: int = Field(2, ge=1, description="rattled copies of each scaled cell")


class SurfaceSettings(Section):
    """Slabs cut from each crystal (cell kept periodic, vacuum along the normal)."""

    miller: list[tuple[int, int, int]] = [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
    layers: int = Field(2, ge=1)
    vacuum: float = Field(6.0, gt=0, description="Å on each side")


class ClusterSettings(Section):
    """Spheres cut around random atoms of a supercell, in a periodic box with vacuum."""

    n: int = Field(1, ge=1, description="clusters per crystal")
    radius: float = Field(5.0, gt=0, description="Å")
    vacuum: float = Field(6.0, gt=0, description="Å on each side")


class MDSettings(Section):
    """Langevin MD snapshots of each cell, driven by a trained pesmith model."""

    model: Path = Field(description="model file written by `pesmith train`")
    temperature_K: float = Field(1500.0, gt=0)
    steps: int = Field(200, ge=1)
    interval: int = Field(50, ge=1, description="steps between snapshots")
    timestep_fs: float = Field(1.0, gt=0)
    friction: float = Field(0.02, gt=0, description="1/fs")


class GenerateConfig(Section):
    """A ``pesmith generate`` configuration."""

    crystals: list[Path] = Field(min_length=1, description="crystal structure files (extxyz, cif, POSCAR, ...)")
    output: Path = Field(description="labeled ase.db to write (resumable)")
    reference: PluginSettings
    seed: int = 0
    max_atoms: int = Field(80, ge=1, description="cells with more atoms are skipped (reference cost)")
    supercells: list[tuple[int, int, int]] = Field([(2, 2, 2)], description="repeats of each crystal, besides the crystal itself")
    scale: ScaleSettings = ScaleSettings()
    rattle: RattleSettings = RattleSettings()
    vacancies: int = Field(1, ge=0, description="structures per cell and element with one atom of it removed")
    surfaces: SurfaceSettings | None = SurfaceSettings()
    clusters: ClusterSettings | None = ClusterSettings()
    md: MDSettings | None = None
    workers: int = Field(1, ge=1)
    time_limit: float | None = Field(None, gt=0, description="seconds per structure")
    progress: bool = True


def load_generate_config(path: str | Path, registry: Registry) -> GenerateConfig:
    """Read and validate a generate config; relative paths resolve against its folder."""
    path = Path(path)
    config = parse_config(path, GenerateConfig)
    base = path.resolve().parent
    config.crystals = [resolve_path(base, p) for p in config.crystals]
    config.output = resolve_path(base, config.output)
    if config.md is not None:
        config.md.model = resolve_path(base, config.md.model)
    if config.scale.min > config.scale.max:
        raise ConfigError(f"{path}: scale.min ({config.scale.min}) is larger than scale.max ({config.scale.max})")
    check_plugin_options(path, "reference", config.reference, registry, implicit=())
    return config


def read_crystal(path: Path) -> Atoms:
    """The (last) structure of a crystal file, which must have a full 3D periodic cell."""
    atoms = read_structures(path, what="crystal file (`crystals:` in the generate config)")[-1]
    if not has_full_cell(atoms):
        raise ConfigError(f"crystal {path} has no 3D periodic cell; give it a cell and pbc=True")
    atoms.calc = None
    return atoms


def scaled_and_rattled(cell: Atoms, scale: ScaleSettings, rattle: RattleSettings, rng: np.random.Generator) -> list[Atoms]:
    """``scale.n x rattle.n`` copies: lattice scaled isotropically, then every atom displaced."""
    out = []
    for factor in np.linspace(scale.min, scale.max, scale.n):
        for _ in range(rattle.n):
            atoms = cell.copy()
            atoms.set_cell(cell.cell * factor, scale_atoms=True)
            atoms.positions += rng.normal(0.0, rattle.stdev, atoms.positions.shape)
            out.append(atoms)
    return out


def with_vacancies(cell: Atoms, n: int, stdev: float, rng: np.random.Generator) -> list[Atoms]:
    """For each element with more than one atom, ``n`` copies with one random atom of it removed."""
    out = []
    for symbol in sorted(set(cell.get_chemical_symbols())):
        sites = np.flatnonzero(np.array(cell.get_chemical_symbols()) == symbol)
        if len(sites) < 2:
            continue
        for _ in range(n):
            atoms = cell.copy()
            del atoms[int(rng.choice(sites))]
            atoms.positions += rng.normal(0.0, stdev, atoms.positions.shape)
            out.append(atoms)
    return out


def slabs(crystal: Atoms, settings: SurfaceSettings) -> list[Atoms]:
    """One slab per Miller index; periodic in all directions with vacuum along the normal."""
    out = []
    for miller in settings.miller:
        slab = surface(crystal, miller, settings.layers, vacuum=settings.vacuum)
        slab.pbc = True
        out.append(slab)
    return out


def clusters(crystal: Atoms, settings: ClusterSettings, rng: np.random.Generator) -> list[Atoms]:
    """Spheres of ``radius`` (Å) around random atoms of a supercell large enough to hold them."""
    repeats = [int(np.ceil(2 * settings.radius / h)) + 1 for h in crystal.cell.lengths()]
    big = crystal.repeat(repeats)
    out = []
    for _ in range(settings.n):
        center = big.positions[rng.integers(len(big))]
        distances = np.linalg.norm(big.positions - center, axis=1)
        cluster = big[distances <= settings.radius]
        cluster.cell = np.eye(3) * (2 * settings.radius + 2 * settings.vacuum)
        cluster.pbc = True
        cluster.center()
        out.append(cluster)
    return out


def md_snapshots(cell: Atoms, settings: MDSettings, rng: np.random.Generator) -> list[Atoms]:
    """Langevin snapshots of ``cell`` every ``interval`` steps with the model of ``settings``."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    from pesmith import load_calculator

    atoms = cell.copy()
    atoms.calc = load_calculator(str(settings.model))
    thermalize_momenta(atoms, temperature_K=settings.temperature_K, rng=rng)
    dynamics = Langevin(
        atoms,
        settings.timestep_fs * units.fs,
        temperature_K=settings.temperature_K,
        friction=settings.friction / units.fs,
        fixcm=False,
        rng=rng,
    )
    snapshots = []
    for _ in range(settings.steps // settings.interval):
        dynamics.run(settings.interval)
        snapshot = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
        snapshots.append(snapshot)
    return snapshots


def generate_structures(config: GenerateConfig) -> list[Atoms]:
    """Every unlabeled structure of the recipe, in a reproducible order for ``config.seed``."""
    rng = np.random.default_rng(config.seed)
    structures: list[Atoms] = []
    for path in config.crystals:
        crystal = read_crystal(path)
        cells = [crystal] + [crystal.repeat(r) for r in config.supercells]
        cells = [c for c in cells if len(c) <= config.max_atoms]
        if not cells:
            log.warning("skipping %s: %d atoms > max_atoms=%d", path, len(crystal), config.max_atoms)
            continue
        found = []
        for cell in cells:
            found += scaled_and_rattled(cell, config.scale, config.rattle, rng)
            found += with_vacancies(cell, config.vacancies, config.rattle.stdev, rng)
            if config.md is not None:
                found += md_snapshots(cell, config.md, rng)
        if config.surfaces is not None:
            found += slabs(crystal, config.surfaces)
        if config.clusters is not None:
            found += clusters(crystal, config.clusters, rng)
        for atoms in found:
            atoms.info = {"generated_from": path.name}
        structures += [a for a in found if len(a) <= config.max_atoms]
    if not structures:
        raise ConfigError(f"no structure has at most max_atoms={config.max_atoms} atoms; raise max_atoms or add smaller crystals")
    return structures


def generate(config: GenerateConfig, registry: Registry, map_fn: MapFunction, where: str = "generate config") -> LabelSummary:
    """Write ``<output stem>_structures.xyz`` and label it into ``config.output``."""
    structures = generate_structures(config)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    structures_path = config.output.with_name(config.output.stem + "_structures.xyz")
    with atomic_path(structures_path) as temporary:
        ase_files.write(temporary, structures, format="extxyz")
    label_config = LabelConfig(
        structures=structures_path,
        database=config.output,
        reference=config.reference,
        workers=config.workers,
        time_limit=config.time_limit,
        progress=config.progress,
    )
    return label_structures(label_config, registry, map_fn, where=where)
