"""``pesmith generate``: an initial Li–Si training set from crystals, labeled by a reference.

The recipe of the LixSi study: each crystal (and its supercells) is scaled isotropically,
rattled, given Li and Si vacancies, cut into surfaces and clusters, and optionally heated
with an existing model (MD snapshots). Amorphous Li_x Si cells along a composition path are
melt-quenched with the reference itself (``amorphous:``, one mapped task per cell). The
structures go to ``<output stem>_structures.xyz`` and are then labeled exactly as ``pesmith
label`` does, into the ase.db ``output`` that ``pesmith train`` reads. Everything random draws
from generators seeded by ``seed``: one for the crystal recipe, one per amorphous cell (so the
result does not depend on the number of workers).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from ase import Atoms
from ase.build import surface
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm import tqdm

from pesmith import ase_files
from pesmith.atomic_io import atomic_path, restored_on_failure
from pesmith.config import PluginSettings, check_plugin_options, parse_config, resolve_path
from pesmith.data import read_structures
from pesmith.errors import CalculationFailed, ConfigError
from pesmith.labeling import LabelConfig, LabelSummary, MapFunction, build_reference, label_structures
from pesmith.registry import Registry
from pesmith.search.amorphous import composition_counts, interpolated_volume_per_atom
from pesmith.simulate.md import MeltQuenchSettings, melt_quench
from pesmith.simulate.packing import random_cell
from pesmith.simulate.relax import RelaxSettings, relax_positions
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
    """Langevin MD snapshots of each cell, driven by a trained pesmith model: a constant-temperature
    schedule of :func:`pesmith.simulate.md.melt_quench`."""

    model: Path = Field(description="model file written by `pesmith train`")
    temperature_K: float = Field(1500.0, gt=0)
    steps: int = Field(200, ge=1)
    interval: int = Field(50, ge=1, description="steps between snapshots")
    timestep_fs: float = Field(1.0, gt=0)
    friction: float = Field(0.02, gt=0, description="1/fs")

    @property
    def n_steps(self) -> int:
        """MD steps run: ``steps`` rounded down to a multiple of ``interval`` (one snapshot per interval)."""
        return self.steps // self.interval * self.interval

    def target_K(self, step: int) -> float:
        """Thermostat temperature (K) at every step: ``temperature_K``."""
        return self.temperature_K


# generate's relaxation of each amorphous cell's last frame, unless the config says otherwise
AMORPHOUS_RELAX_DEFAULTS = {"relax": "positions", "fmax": 0.1, "steps": 100}


class AmorphousSettings(Section):
    """Amorphous Li_x Si cells: a random packing (cube) per cell, melt-quenched with the reference.

    ``compositions`` are x in Li_x Si, i.e. n_Li / n_Si (x = 0 is amorphous Si; pure Li is not
    expressible: its crystal and the liquid-like a-Li are left to the crystal recipe).
    """

    compositions: list[Annotated[float, Field(ge=0, le=50)]] = Field(
        min_length=1, description="x = n_Li / n_Si of each cell, e.g. [3.75, 3.25, 2.33, 1.71, 1.0, 0.5]"
    )
    atoms: int = Field(32, ge=2, le=500, description="atoms per cell: the size within 25 % nearest the composition")
    cells: int = Field(1, ge=1, description="cells per composition")
    volume_per_atom: float | None = Field(
        None, gt=0, description="Å^3; default: interpolated in the Li fraction between the crystals' volumes per atom"
    )
    min_distance: float = Field(2.0, gt=0, description="Å, between atoms of the random start")
    melt_quench: MeltQuenchSettings = MeltQuenchSettings()
    snapshots: int = Field(5, ge=1, description="frames kept per cell, evenly spaced in time, the last one included")
    relax: RelaxSettings | None = Field(
        None, description="also relax each cell's last frame (defaults: positions, fmax 0.1 eV/Å, 100 steps); the last"
        " structure is kept even if the criteria are not reached",
    )

    @field_validator("relax", mode="before")
    @classmethod
    def _relax_defaults(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {**AMORPHOUS_RELAX_DEFAULTS, **value}
        return value

    @model_validator(mode="after")
    def _no_time_limit(self) -> "AmorphousSettings":
        if self.relax is not None and self.relax.time_limit is not None:
            raise ValueError("relax.time_limit is not used here (a cell's melt-quench and relaxation are one task); remove it")
        return self

    @model_validator(mode="after")
    def _enough_frames(self) -> "AmorphousSettings":
        if self.snapshots > self.melt_quench.n_snapshots:
            raise ValueError(
                f"snapshots ({self.snapshots}) is more than the {self.melt_quench.n_snapshots} frames the melt_quench"
                " makes; lower snapshots or melt_quench.interval, or lengthen the run"
            )
        return self


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
    amorphous: AmorphousSettings | None = None
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
    if config.amorphous is not None and config.amorphous.atoms > config.max_atoms:
        raise ConfigError(f"{path}: amorphous.atoms ({config.amorphous.atoms}) is above max_atoms ({config.max_atoms}); lower it")
    reference = check_plugin_options(path, "reference", config.reference, registry, implicit=())
    if config.amorphous is not None and not reference.has_calculator():
        raise ConfigError(
            f"{path}: amorphous: the melt-quench MD needs an ASE calculator, but reference kind"
            f" '{config.reference.kind}' ({reference.__name__}) has no make_calculator (it does not override Reference.make_calculator);"
            " use a calculator reference (e.g. chgnet) or remove the amorphous section"
        )
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


def with_vacancies(cell: Atoms, n: int, stdev: float, rng: np.random.Generator, elements: Collection[str] | None = None) -> list[Atoms]:
    """For each element (of ``elements``, default all) with more than one atom, ``n`` copies with
    one random atom of it removed, rattled by ``stdev`` Å."""
    out = []
    for symbol in sorted(set(cell.get_chemical_symbols()) if elements is None else set(elements)):
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
    from pesmith import load_calculator

    return melt_quench(cell, load_calculator(str(settings.model)), settings, rng)


def generate_structures(config: GenerateConfig) -> list[Atoms]:
    """Every unlabeled structure of the crystal recipe, in a reproducible order for ``config.seed``
    (the amorphous cells, which need the reference, come from :func:`amorphous_structures`)."""
    rng = np.random.default_rng(config.seed)
    structures: list[Atoms] = []
    bar = tqdm(config.crystals, desc="structures from crystals", unit="crystal", disable=not config.progress)
    for path in bar:
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
        bar.set_postfix_str(f"{path.name}: {len(found)} structures")
    if not structures:
        raise ConfigError(f"no structure has at most max_atoms={config.max_atoms} atoms; raise max_atoms or add smaller crystals")
    return structures


AMORPHOUS_STREAM = 1  # seed sequence key of the amorphous cells, apart from the crystal recipe's generator


@dataclass(frozen=True)
class CellJob:
    """One amorphous cell to melt-quench: its random start and the generator its MD draws from."""

    x: float  # requested n_Li / n_Si
    start: Atoms
    rng: np.random.Generator


def amorphous_jobs(config: GenerateConfig) -> list[CellJob]:
    """The random start of every amorphous cell, ``cells`` per composition, in config order."""
    settings = config.amorphous
    assert settings is not None
    crystals = [read_crystal(path) for path in config.crystals] if settings.volume_per_atom is None else []
    seeds = np.random.SeedSequence([config.seed, AMORPHOUS_STREAM]).spawn(len(settings.compositions) * settings.cells)
    jobs = []
    for k, seed in enumerate(seeds):
        x = settings.compositions[k // settings.cells]
        counts = composition_counts(x, settings.atoms)
        volume = settings.volume_per_atom or interpolated_volume_per_atom(counts["Li"] / counts["Si"], crystals)
        rng = np.random.default_rng(seed)
        try:
            start = random_cell(counts, volume, rng, min_distance=settings.min_distance)
        except ConfigError as exc:
            raise ConfigError(f"amorphous, x = {x}: {exc}") from None
        jobs.append(CellJob(x, start, rng))
    return jobs


def melt_quench_cell(
    reference: PluginSettings, registry: Registry, settings: AmorphousSettings, where: str, job: CellJob
) -> tuple[list[Atoms], str | None]:
    """In a worker: build the reference, melt-quench ``job`` with its calculator and return
    ``settings.snapshots`` evenly spaced frames (and the relaxed last frame), or the reason it failed."""
    calculator = build_reference(reference, registry, where).make_calculator()  # load_generate_config checked it has one
    try:
        frames = melt_quench(job.start, calculator, settings.melt_quench, job.rng)
        if settings.relax is not None:
            frames.append(relax_positions(frames[-1], calculator, settings.relax))
    except CalculationFailed as exc:
        return [], str(exc)
    n = settings.melt_quench.n_snapshots
    kept = [frames[round((i + 1) * n / settings.snapshots) - 1] for i in range(settings.snapshots)]
    kept += frames[n:]  # the relaxed frame
    for frame in kept:
        frame.info.update(generated_from=f"amorphous {job.start.get_chemical_formula(mode='metal')}", amorphous_x=job.x)
    return kept, None


def amorphous_structures(config: GenerateConfig, registry: Registry, map_fn: MapFunction, where: str) -> list[Atoms]:
    """Frames of every amorphous cell, melt-quenched with the reference (one mapped task per
    cell), in job order; a cell whose MD fails is left out with a warning."""
    jobs = amorphous_jobs(config)
    task = partial(melt_quench_cell, config.reference, registry, config.amorphous, where)
    results: dict[int, list[Atoms]] = {}
    for index, (frames, reason) in map_fn(
        task, jobs, workers=config.workers, progress=config.progress, description=f"melt-quench with {config.reference.kind}"
    ):
        results[index] = frames
        if reason is not None:
            log.warning("amorphous cell %d (x = %g) left out: %s", index, jobs[index].x, reason)
    if not any(results.values()):
        raise ConfigError(f"{where}: every amorphous melt-quench failed (see the warnings); lower amorphous.melt_quench.timestep_fs")
    return [frame for index in range(len(jobs)) for frame in results[index]]


def generate(config: GenerateConfig, registry: Registry, map_fn: MapFunction, where: str = "generate config") -> LabelSummary:
    """Write ``<output stem>_structures.xyz`` and label it into ``config.output``.

    The reference is built first, so a setup error writes nothing. If anything after that fails,
    the structures file is put back as it was (removed, or the previous run's restored); labels
    written before the failure stay in the database, and a rerun regenerates the same structures
    and resumes.
    """
    build_reference(config.reference, registry, where)
    structures = generate_structures(config)
    if config.amorphous is not None:
        structures += amorphous_structures(config, registry, map_fn, where)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    structures_path = config.output.with_name(config.output.stem + "_structures.xyz")
    label_config = LabelConfig(
        structures=structures_path,
        database=config.output,
        reference=config.reference,
        workers=config.workers,
        time_limit=config.time_limit,
        progress=config.progress,
    )
    with restored_on_failure(structures_path):
        with atomic_path(structures_path) as temporary:
            ase_files.write(temporary, structures, format="extxyz")
        return label_structures(label_config, registry, map_fn, where=where)
