"""Li in carbon after Fujikake et al. (J. Chem. Phys. 148, 241714 (2018)) at small scale, in one command:

    python scripts/li_carbon_example.py configs/li_carbon.yaml

A GAP for Li in carbon fitted to Li intercalation structures on top of a carbon model (delta
learning): the carbon model is a GAP fitted on pure carbon (graphite, amorphous carbon), the Li
GAP has a Li-Li and a Li-C 2-body term, a 3-body term over C-Li-C triplets and a SOAP term over
the C neighbours of each Li, and ``baseline: {kind: model, file: carbon.pt}``.

Stages, in order (each a function of the config and the registry returning a JSON-able dict):

1. ``data``: AB graphite and amorphous carbon cells melt-quenched with the reference at a few
   densities (the hosts), Li inserted at their most open void sites (graphite: the gallery), the
   hosts without Li, strained and rattled copies, scaled graphite, bcc Li; labeled by the
   reference into ``<output>/reference.db``. Whole hosts (with their Li structures) are held out
   for testing.
2. ``carbon``: the carbon GAP (``pesmith.workflows.train``) on the pure-carbon training
   structures -> ``<output>/models/carbon.pt``.
3. ``li_gap``: the Li GAP on every training structure with the carbon model as baseline ->
   ``<output>/models/li_gap.pt``.
4. ``analysis``: Li intercalation energies E_int = [E(host + n Li) - E(host) - n mu_Li] / n at the
   inserted geometries, GAP against reference (RMSE in meV per Li, training and held-out hosts);
   held-out test errors of both models; a short NVT MD with the Li GAP -> Li-C coordination
   number (partial RDF) and Li vibrational density of states (arrays as CSV, PNGs).

Each finished stage writes ``<output>/<stage>.json`` (its result and wall time); all of them are
gathered in ``<output>/results.json`` and ``<output>/summary.md``. A rerun skips every stage whose
file exists (labels and the MD inside a stage resume too). A bad config or input prints one line
on stderr and exits with 2.

Units: Å, eV, K, fs, g/cm^3; intercalation energies in eV per Li, errors in meV.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import Atoms
from ase.lattice.hexagonal import Graphite
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial import cKDTree

from pesmith import ase_files
from pesmith.analysis.rdf import coordination_numbers, rdf
from pesmith.analysis.vibrations import vdos
from pesmith.atomic_io import atomic_path, write_json_atomic, write_text_atomic
from pesmith.cli.common import run_stages as study_stages, stages_summary
from pesmith.config import (
    DataSettings, ModelBaselineSettings, PluginSettings, TermSettings, TrainConfig, check_plugin_options,
    check_potential_sections, parse_config, resolve_path, term_sections, validate_section,
)
from pesmith.errors import ConfigError
from pesmith.labeling import LabelConfig, build_reference, label_structures
from pesmith.parallel import parallel_map
from pesmith.registry import Registry
from pesmith.search.initial_set import RattleSettings
from pesmith.simulate.dynamics import MDSettings, run_md
from pesmith.simulate.md import MeltQuenchSettings, melt_quench
from pesmith.simulate.packing import random_cell

Supercell = tuple[int, int, int]
AMU_PER_G_CM3 = 1.0 / 1.66053906660  # (amu / Å^3) per (g / cm^3)


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class GraphiteSettings(Section):
    """AB (Bernal) graphite, ASE's hexagonal cell of 4 C."""

    a: float = Field(2.46, gt=0, description="Å, in-plane lattice constant")
    c: float = Field(6.70, gt=0, description="Å, two layers")
    supercell: Supercell = (3, 3, 1)


class AmorphousCarbon(Section):
    """Random C cells at fixed densities melt-quenched with the reference (NVT)."""

    densities: list[float] = Field(min_length=1, description="g/cm^3")
    atoms: int = Field(32, ge=2, description="C per cell")
    min_distance: float = Field(1.3, gt=0, description="Å, closest two atoms of the random start")
    melt_quench: MeltQuenchSettings = Field(default_factory=MeltQuenchSettings)
    snapshots: int = Field(4, ge=1, description="evenly spaced frames kept per cell (the last is the quenched cell)")


class LithiumSettings(Section):
    """Li inserted at the most open void sites of a host."""

    counts: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1, description="Li per structure")
    min_separation: float = Field(3.0, gt=0, description="Å between two inserted Li")
    grid: float = Field(0.3, gt=0, le=1.0, description="Å, spacing of the void grid")


class DataStage(Section):
    """Stage 1: the structures and their reference labels."""

    graphite: GraphiteSettings = Field(default_factory=GraphiteSettings)
    amorphous: AmorphousCarbon
    hosts_per_density: int = Field(2, ge=1, description="a-C hosts per density: the last melt-quench frames")
    lithium: LithiumSettings = Field(default_factory=LithiumSettings)
    rattle: RattleSettings = Field(default_factory=RattleSettings)
    strain: float = Field(0.03, ge=0, lt=0.3, description="largest component of a random symmetric strain")
    strained: int = Field(2, ge=0, description="strained (and rattled) copies of every host, without and with Li")
    scale: list[float] = Field(default_factory=lambda: [0.97, 1.0, 1.03], min_length=1, description="lattice scalings of graphite and bcc Li")
    li_bcc_a: float = Field(3.44, gt=0, description="Å, bcc Li lattice constant (1.0 in scale: mu_Li)")
    test_hosts: float = Field(0.34, ge=0, lt=1, description="share of each density's a-C hosts held out, with their Li structures")
    time_limit: float | None = Field(None, gt=0, description="s per label; beyond it the structure fails")


class PotentialSection(Section):
    """A ``pesmith train`` potential: ``descriptor`` + ``model`` or ``terms``, and ``training``.
    Species are always [Li, C]."""

    descriptor: PluginSettings | None = None
    model: PluginSettings | None = None
    terms: list[TermSettings] | None = None
    training: dict[str, Any] = Field(default_factory=dict)

    @property
    def term_sections(self) -> list[TermSettings]:
        return term_sections(self.descriptor, self.model, self.terms)


class AnalysisStage(Section):
    """Stage 4: the MD with the Li GAP and its analysis."""

    md_host: str = Field("graphite", description="graphite, or an a-C density (its quenched cell), with the most Li")
    md: MDSettings = Field(default_factory=lambda: MDSettings(ensemble="bussi", temperature_K=300.0, steps=2000, interval=2))
    li_c_cutoff_A: float = Field(2.8, gt=0, description="Å: the Li-C coordination number is also counted to this radius")
    r_max: float = Field(5.0, gt=0, description="Å, RDF range")
    bins: int = Field(100, ge=10)
    vdos_max_lag_fs: float | None = Field(500.0, gt=0, description="fs of VACF used for the VDOS")


class LiCarbonConfig(Section):
    """The example's config (configs/li_carbon.yaml)."""

    output: Path = Field(description="folder of every output")
    seed: int = 0
    workers: int = Field(1, ge=1, description="processes for labeling and the melt-quenches (1 thread each)")
    reference: PluginSettings
    data: DataStage
    carbon_model: PotentialSection
    li_gap: PotentialSection
    analysis: AnalysisStage = Field(default_factory=AnalysisStage)


SPECIES = ["Li", "C"]


def load_config(path: Path, registry: Registry) -> LiCarbonConfig:
    """Read and validate the config; paths resolve against its folder, plugin and training keys
    against the plugins.

    Raises
    ------
    ConfigError
        Naming the file and the key.
    """
    config = parse_config(path, LiCarbonConfig)
    config.output = resolve_path(path.resolve().parent, config.output)
    check_plugin_options(path, "reference", config.reference, registry, implicit=())
    for name in ("carbon_model", "li_gap"):
        section: PotentialSection = getattr(config, name)
        model_cls = check_potential_sections(path, section, section.training, registry, prefix=f"{name}.")
        validate_section(path, f"{name}.training", section.training, model_cls.settings_schema)
        for k, term in enumerate(section.term_sections):
            if "species" in term.descriptor.options:
                raise ConfigError(f"{path}: key '{name}.terms[{k}].descriptor.species': the species are always {SPECIES}; remove it")
            try:  # values too (e.g. pairs of elements not in SPECIES), before any stage runs
                registry.get("descriptor", term.descriptor.kind)(species=SPECIES, **term.descriptor.options)
            except ConfigError as exc:
                raise ConfigError(f"{path}: key '{name}.terms[{k}].descriptor': {exc}") from None
    if any(n < 1 for n in config.data.graphite.supercell):
        raise ConfigError(f"{path}: key 'data.graphite.supercell': repeats must be >= 1")
    if any(n < 1 for n in config.data.lithium.counts):
        raise ConfigError(f"{path}: key 'data.lithium.counts': Li per structure must be >= 1, got {config.data.lithium.counts}")
    if any(not d > 0 for d in config.data.amorphous.densities):
        raise ConfigError(f"{path}: key 'data.amorphous.densities': densities must be positive g/cm^3, got {config.data.amorphous.densities}")
    hosts = ["graphite"] + [f"{d:g}" for d in config.data.amorphous.densities]
    if config.analysis.md_host not in hosts:
        raise ConfigError(f"{path}: key 'analysis.md_host': {config.analysis.md_host!r} is not one of {hosts}")
    if config.data.hosts_per_density > config.data.amorphous.snapshots:
        raise ConfigError(f"{path}: key 'data.hosts_per_density': {config.data.hosts_per_density} exceeds data.amorphous.snapshots")
    return config


# ---------------------------------------------------------------------------------------------
# Stage 1: data
# ---------------------------------------------------------------------------------------------


def graphite(settings: GraphiteSettings) -> Atoms:
    """AB-stacked graphite (layers at z = 0 and c/2), ``settings.supercell`` repeats of ASE's 4-atom cell."""
    cell = Graphite("C", latticeconstant={"a": settings.a, "c": settings.c}, size=settings.supercell)
    return Atoms(cell.numbers, positions=cell.positions, cell=cell.cell, pbc=True)


def void_sites(host: Atoms, n: int, min_separation: float, grid: float) -> np.ndarray:
    """``(k, 3)`` positions (Å), k <= n: the grid points farthest from every atom of ``host``,
    greedily, each at least ``min_separation`` Å from those chosen before (periodic images)."""
    cell = host.cell.array
    shape = [max(2, int(np.ceil(length / grid))) for length in host.cell.lengths()]
    axes = [np.arange(m) / m for m in shape]
    fractional = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    points = fractional @ cell  # (g, 3)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ cell  # (27, 3)
    images = (host.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    distance, _ = cKDTree(images).query(points)  # (g,) Å to the nearest atom
    chosen: list[np.ndarray] = []
    for index in np.argsort(-distance, kind="stable"):
        candidate = points[index]
        if chosen:
            images_of_chosen = (np.array(chosen)[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
            if np.linalg.norm(images_of_chosen - candidate, axis=1).min() < min_separation:
                continue
        chosen.append(candidate)
        if len(chosen) == n:
            break
    return np.array(chosen)


def with_lithium(host: Atoms, sites: np.ndarray) -> Atoms:
    """``host`` with a Li atom at each of ``sites`` (Å), after the C atoms."""
    atoms = host.copy()
    atoms.info = {}
    atoms += Atoms(["Li"] * len(sites), positions=sites)
    return atoms


def strained_copy(atoms: Atoms, strain: float, stdev: float, rng: np.random.Generator) -> Atoms:
    """``atoms`` under a random symmetric strain (components uniform in [-strain, strain]),
    rattled by ``stdev`` Å."""
    eps = rng.uniform(-strain, strain, (3, 3))
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    out.positions += rng.normal(0.0, stdev, out.positions.shape)
    return out


def rattled(atoms: Atoms, stdev: float, rng: np.random.Generator) -> Atoms:
    out = atoms.copy()
    out.positions += rng.normal(0.0, stdev, out.positions.shape)
    return out


def tagged(atoms: Atoms, host: str, kind: str, n_li: int = 0) -> Atoms:
    """``atoms`` with its provenance in ``info``: host name, kind, Li count."""
    atoms = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    atoms.info = {"host": host, "kind": kind, "n_li": n_li}
    return atoms


def amorphous_frames(reference: PluginSettings, registry: Registry, settings: AmorphousCarbon, start: tuple[Atoms, int]) -> list[Atoms]:
    """In a worker: ``settings.snapshots`` evenly spaced frames (the last: the quenched cell) of a
    melt-quench of ``start`` (a random cell and its seed) driven by the reference."""
    atoms, seed = start
    calculator = build_reference(reference, registry, "reference").make_calculator()
    frames = melt_quench(atoms, calculator, settings.melt_quench, np.random.default_rng(seed))
    n = len(frames)
    return [frames[round((i + 1) * n / settings.snapshots) - 1] for i in range(min(settings.snapshots, n))]


def amorphous_carbon(config: LiCarbonConfig, registry: Registry) -> dict[float, list[Atoms]]:
    """Melt-quench frames of a random C cell per density (g/cm^3), the quenched cell last."""
    settings = config.data.amorphous
    seeds = np.random.SeedSequence([config.seed, 1]).spawn(len(settings.densities))
    starts = []
    for density, seed in zip(settings.densities, seeds):
        rng = np.random.default_rng(seed)
        volume_per_atom = 12.011 / (density * AMU_PER_G_CM3)  # Å^3
        starts.append((random_cell({"C": settings.atoms}, volume_per_atom, rng, settings.min_distance), int(rng.integers(2**31))))
    task = partial(amorphous_frames, config.reference, registry, settings)
    results = dict(parallel_map(task, starts, workers=config.workers, description="melt-quench with the reference"))
    return {density: results[k] for k, density in enumerate(settings.densities)}


def build_structures(config: LiCarbonConfig, registry: Registry) -> list[Atoms]:
    """Every structure of the data stage, tagged (:func:`tagged`); held-out hosts have
    ``info["test"] = True``."""
    settings = config.data
    rng = np.random.default_rng(config.seed)
    stdev = settings.rattle.stdev
    out: list[Atoms] = []
    hosts: dict[str, Atoms] = {"graphite": graphite(settings.graphite)}
    for s in settings.scale:  # scaled graphite (rattled); the unscaled one is a host
        if s != 1.0:
            cell = hosts["graphite"].copy()
            cell.set_cell(cell.cell.array * s, scale_atoms=True)
            out.append(tagged(rattled(cell, stdev, rng), "graphite", "scaled"))
    for density, frames in amorphous_carbon(config, registry).items():
        n_hosts = settings.hosts_per_density
        for k, frame in enumerate(frames[:-n_hosts]):
            out.append(tagged(frame, f"a-C {density:g}", "snapshot"))
        for k, frame in enumerate(frames[-n_hosts:][::-1]):  # the quenched cell first
            hosts[f"a-C {density:g}" + ("" if k == 0 else f" #{k}")] = frame
    test: set[str] = set()  # per density, that share of its hosts at random; the MD's host stays in training
    n_test = int(round(settings.test_hosts * settings.hosts_per_density))
    for density in settings.amorphous.densities:
        names = [name for name in hosts if name.split(" #")[0] == f"a-C {density:g}" and name != f"a-C {config.analysis.md_host}"]
        test |= set(rng.choice(names, size=min(n_test, len(names)), replace=False).tolist())
    counts = sorted(settings.lithium.counts)
    for name, host in hosts.items():
        found = [tagged(host, name, "host")]
        found += [tagged(rattled(host, stdev, rng), name, "rattled host") for _ in range(settings.rattle.n)]
        sites = void_sites(host, max(counts), settings.lithium.min_separation, settings.lithium.grid)
        for n in counts:
            if n <= len(sites):
                li = with_lithium(host, sites[:n])
                found.append(tagged(li, name, "intercalated", n))
                found += [tagged(rattled(li, stdev, rng), name, "rattled intercalated", n) for _ in range(settings.rattle.n)]
        most = with_lithium(host, sites[: min(max(counts), len(sites))])
        for _ in range(settings.strained):
            found.append(tagged(strained_copy(host, settings.strain, stdev, rng), name, "strained host"))
            found.append(tagged(strained_copy(most, settings.strain, stdev, rng), name, "strained intercalated", len(sites[: max(counts)])))
        for atoms in found:
            atoms.info["test"] = name in test
        out += found
    bcc = Atoms("Li2", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * settings.li_bcc_a, pbc=True).repeat(2)
    for s in settings.scale:
        cell = bcc.copy()
        cell.set_cell(cell.cell.array * s, scale_atoms=True)
        kind = "bcc Li" if s == 1.0 else "scaled bcc Li"
        out.append(tagged(cell, "Li", kind, len(cell)))
        out += [tagged(rattled(cell, stdev, rng), "Li", "rattled " + kind.replace("scaled ", ""), len(cell)) for _ in range(settings.rattle.n)]
    for atoms in out:
        atoms.info.setdefault("test", False)
    return out


def stage_data(config: LiCarbonConfig, registry: Registry) -> dict[str, Any]:
    """Write ``structures.xyz`` (once: a rerun labels the same file) and label it into
    ``reference.db`` (resumes: labeled structures are skipped)."""
    structures_path = config.output / "structures.xyz"
    if not structures_path.exists():
        structures = build_structures(config, registry)
        with atomic_path(structures_path) as temporary:
            ase_files.write(temporary, structures, format="extxyz")
    label_config = LabelConfig(
        structures=structures_path, database=config.output / "reference.db", reference=config.reference,
        workers=config.workers, time_limit=config.data.time_limit, progress=False,
    )
    summary = label_structures(label_config, registry, parallel_map, where="reference")
    labeled = labeled_structures(config)
    kinds: dict[str, int] = {}
    for atoms in labeled:
        kinds[atoms.info["kind"]] = kinds.get(atoms.info["kind"], 0) + 1
    carbon = [a for a in labeled if a.info["host"] != "Li" and a.info["n_li"] == 0]
    li_c_distances = [shortest_li_c(a) for a in labeled if a.info["kind"] == "intercalated"]
    return {
        "structures": summary.n_structures, "labeled": len(labeled), "failed": summary.n_failed,
        "test_structures": sum(bool(a.info["test"]) for a in labeled),
        "test_hosts": sorted({a.info["host"] for a in labeled if a.info["test"]}),
        "hosts": sorted({a.info["host"] for a in labeled if a.info["kind"] == "host"}),
        "kinds": kinds, "carbon_structures": len(carbon),
        "atoms_min": min(len(a) for a in labeled), "atoms_max": max(len(a) for a in labeled),
        "shortest_inserted_li_c_A": [min(li_c_distances), max(li_c_distances)] if li_c_distances else None,
        "reference": {"kind": config.reference.kind, **config.reference.options},
    }


def shortest_li_c(atoms: Atoms) -> float:
    """Shortest Li-C distance (Å, periodic)."""
    li = np.flatnonzero(atoms.symbols == "Li")
    c = np.flatnonzero(atoms.symbols == "C")
    return float(min(atoms.get_distances(i, c, mic=True).min() for i in li))


def labeled_structures(config: LiCarbonConfig) -> list[Atoms]:
    """The labeled structures of ``reference.db`` (failed ones left out), in the order of
    ``structures.xyz``, each with its ``info`` from there and its labels as a calculator."""
    tags = ase_files.read(config.output / "structures.xyz", index=":", format="extxyz")
    out = []
    with ase_files.connect(config.output / "reference.db") as db:
        rows = sorted((row for row in db.select() if row.get("status") == "ok"), key=lambda row: row.source_index)
        for row in rows:
            atoms = row.toatoms(add_additional_information=False)
            atoms.info = dict(tags[row.source_index].info)
            out.append(atoms)
    return out


# ---------------------------------------------------------------------------------------------
# Stages 2 and 3: carbon model and Li GAP
# ---------------------------------------------------------------------------------------------


def split_file(config: LiCarbonConfig, name: str, keep: Callable[[Atoms], bool]) -> Path:
    """The labeled structures ``keep`` selects, written to ``<output>/<name>.xyz`` (energies, forces, stress)."""
    path = config.output / f"{name}.xyz"
    chosen = [a for a in labeled_structures(config) if keep(a)]
    if not chosen:
        raise ConfigError(f"no labeled structures for {name}: check the data section")
    with atomic_path(path) as temporary:
        ase_files.write(temporary, chosen, format="extxyz")
    return path


def is_carbon(atoms: Atoms) -> bool:
    return atoms.info["host"] != "Li" and atoms.info["n_li"] == 0


def train_potential(
    config: LiCarbonConfig, registry: Registry, section: PotentialSection, data: Path, output: Path,
    baseline: Path | None = None, isolated: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Fit ``section`` (species [Li, C]) on ``data`` into ``output``; 10 % validation split;
    ``isolated``: the per-element reference energies (eV), else a least-squares fit."""
    from pesmith.workflows import train

    terms = [
        TermSettings(descriptor=PluginSettings(kind=t.descriptor.kind, **{"species": SPECIES, **t.descriptor.options}), model=t.model, training=t.training)
        for t in section.term_sections
    ]
    model_cls = registry.get("model", terms[0].model.kind)
    train_config = TrainConfig(
        data=DataSettings(train=data, validation_fraction=0.1, seed=config.seed, isolated_atom_energies=isolated),
        terms=terms,
        output=output,
        training=model_cls.settings_schema.model_validate({"progress": False, **section.training}),  # checked by load_config
        baseline=ModelBaselineSettings(kind="model", file=baseline) if baseline is not None else None,
    )
    report = train(train_config, registry, overwrite=True).report  # a resumed stage rewrites its model
    metrics = report["metrics"]
    keys = ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A")
    return {
        "n_train": report["split"]["n_train"], "n_validation": report["split"]["n_validation"],
        "train_wall_s": round(report["training"]["wall_time_s"], 1),
        "validation": {k: metrics["validation"][k] for k in keys if k in metrics.get("validation", {})},
        "train": {k: metrics["train"][k] for k in keys},
    }


def stage_carbon(config: LiCarbonConfig, registry: Registry) -> dict[str, Any]:
    """The carbon GAP on the pure-carbon training structures -> ``models/carbon.pt``."""
    data = split_file(config, "train_carbon", lambda a: is_carbon(a) and not a.info["test"])
    return train_potential(config, registry, config.carbon_model, data, config.output / "models" / "carbon.pt")


def stage_li_gap(config: LiCarbonConfig, registry: Registry) -> dict[str, Any]:
    """The Li GAP on every training structure, the carbon model as baseline -> ``models/li_gap.pt``.

    Its reference energies are fixed, not fitted: 0 for C (the baseline already gives the carbon
    energy) and the reference's bcc Li energy per atom for Li, so the terms learn the Li-C and
    Li-Li interaction relative to bulk Li. A least-squares fit of them on composition (the
    default) put the Li-C binding partly into e0(C) and left every pure-carbon structure
    0.3 eV/atom off in the tiny test config."""
    data = split_file(config, "train_all", lambda a: not a.info["test"])
    split_file(config, "test", lambda a: bool(a.info["test"]))
    bcc = [a for a in labeled_structures(config) if a.info["kind"] == "bcc Li"]
    if not bcc:
        raise ConfigError("no labeled bcc Li cell at scale 1.0 (mu_Li): data.scale must contain 1.0")
    mu_li = bcc[0].get_potential_energy() / len(bcc[0])
    out = train_potential(
        config, registry, config.li_gap, data, config.output / "models" / "li_gap.pt", config.output / "models" / "carbon.pt",
        isolated={"Li": mu_li, "C": 0.0},
    )
    return out | {"reference_energies_eV": {"Li": mu_li, "C": 0.0}}


# ---------------------------------------------------------------------------------------------
# Stage 4: analysis
# ---------------------------------------------------------------------------------------------


def predict(model: Path, structures: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Energies (eV) and forces (eV/Å, per structure) of ``model`` on ``structures``."""
    from pesmith.calculator import PesmithCalculator

    calculator = PesmithCalculator.from_file(model)
    energies, forces = [], []
    for atoms in structures:
        work = atoms.copy()
        work.calc = calculator
        energies.append(work.get_potential_energy())
        forces.append(work.get_forces())
    return np.array(energies), forces


def errors(structures: list[Atoms], energies: np.ndarray, forces: list[np.ndarray]) -> dict[str, Any]:
    """RMSE of energies (meV/atom) and forces (eV/Å; all atoms and Li atoms) against the labels."""
    if not structures:
        return {"n": 0}
    per_atom = [(e - a.get_potential_energy()) / len(a) for a, e in zip(structures, energies)]
    difference = np.concatenate([f - a.get_forces() for a, f in zip(structures, forces)])
    lithium = np.concatenate([a.symbols == "Li" for a in structures])
    out = {"n": len(structures), "energy_rmse_meV_per_atom": 1000 * float(np.sqrt(np.mean(np.square(per_atom)))),
           "force_rmse_eV_per_A": float(np.sqrt(np.mean(difference**2)))}
    if lithium.any():
        out["li_force_rmse_eV_per_A"] = float(np.sqrt(np.mean(difference[lithium] ** 2)))
    return out


def intercalation_energies(structures: list[Atoms], energies: np.ndarray) -> list[dict[str, Any]]:
    """E_int = [E(host + n Li) - E(host) - n mu_Li] / n (eV per Li) of every intercalated
    structure whose host is labeled too, by the labels and by ``energies`` (same order);
    mu_Li per atom of the unscaled bcc Li cell."""
    index = {(a.info["host"], a.info["kind"], a.info["n_li"]): k for k, a in enumerate(structures)}
    bcc = next((k for key, k in index.items() if key[1] == "bcc Li"), None)
    if bcc is None:
        raise ConfigError("no labeled bcc Li cell at scale 1.0 (mu_Li): data.scale must contain 1.0")
    n_bcc = len(structures[bcc])
    mu = {"reference": structures[bcc].get_potential_energy() / n_bcc, "gap": energies[bcc] / n_bcc}
    out = []
    for (host, kind, n), k in index.items():
        if kind != "intercalated" or (host, "host", 0) not in index:
            continue
        h = index[host, "host", 0]
        reference = (structures[k].get_potential_energy() - structures[h].get_potential_energy() - n * mu["reference"]) / n
        gap = (energies[k] - energies[h] - n * mu["gap"]) / n
        out.append({"host": str(host), "n_li": int(n), "test": bool(structures[k].info["test"]), "reference_eV": float(reference),
                    "gap_eV": float(gap), "shortest_li_c_A": shortest_li_c(structures[k])})
    return out


def rmse_meV(rows: list[dict[str, Any]]) -> float | None:
    if not rows:
        return None
    return 1000 * float(np.sqrt(np.mean([(r["gap_eV"] - r["reference_eV"]) ** 2 for r in rows])))


def plot_intercalation(rows: list[dict[str, Any]], path: Path) -> None:
    from pesmith.plots import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for test, marker, label in ((False, "o", "training hosts"), (True, "s", "held-out hosts")):
        chosen = [r for r in rows if r["test"] == test]
        if chosen:
            ax.scatter([r["reference_eV"] for r in chosen], [r["gap_eV"] for r in chosen], marker=marker, label=label)
    values = [v for r in rows for v in (r["reference_eV"], r["gap_eV"])]
    low, high = min(values) - 0.1, max(values) + 0.1
    ax.plot([low, high], [low, high], "k-", lw=0.8)
    ax.set_xlabel("reference E_int (eV/Li)")
    ax.set_ylabel("Li GAP E_int (eV/Li)")
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def md_start(config: LiCarbonConfig, structures: list[Atoms]) -> Atoms:
    """The unrattled intercalated structure of ``analysis.md_host`` with the most Li."""
    host = "graphite" if config.analysis.md_host == "graphite" else f"a-C {config.analysis.md_host}"
    chosen = [a for a in structures if a.info["host"] == host and a.info["kind"] == "intercalated"]
    if not chosen:
        raise ConfigError(f"analysis.md_host {config.analysis.md_host!r}: no labeled intercalated structure of host {host!r}")
    best = max(chosen, key=lambda a: a.info["n_li"])
    return Atoms(best.numbers, positions=best.positions, cell=best.cell, pbc=True)


def md_analysis(config: LiCarbonConfig) -> dict[str, Any]:
    """NVT MD with the Li GAP (resumed if its trajectory exists); Li-C RDF and coordination
    number to the first minimum; Li VDOS. Writes ``md.xyz``, ``md.csv``, ``rdf_li_c.csv``,
    ``rdf_li_c.png``, ``vdos_li.csv``, ``vdos_li.png``."""
    from pesmith.calculator import PesmithCalculator
    from pesmith.plots import pyplot, save_png

    settings = config.analysis
    out_dir = config.output
    start = md_start(config, labeled_structures(config))
    trajectory = out_dir / "md.xyz"
    run = run_md(start, PesmithCalculator.from_file(out_dir / "models" / "li_gap.pt"), settings.md, trajectory, out_dir / "md.csv", resume=trajectory.exists())
    frames = ase_files.read(trajectory, index=":", format="extxyz")
    g = rdf(frames, r_max=settings.r_max, n_bins=settings.bins)
    cn = coordination_numbers(g, smooth=3).get(("Li", "C"))  # to the first minimum of g_LiC
    cn_fixed = coordination_numbers(g, r_cut=settings.li_c_cutoff_A).get(("Li", "C"))
    write_text_atomic(out_dir / "rdf_li_c.csv", "r_A,g_Li_C,n_C_within_r\n" + "".join(
        f"{r:.4f},{v:.6g},{c:.6g}\n" for r, v, c in zip(g.r, g.partial["Li", "C"], g.cumulative["Li", "C"])))
    lithium = np.flatnonzero(frames[0].symbols == "Li")
    dt = settings.md.timestep_fs * settings.md.interval
    velocities = np.stack([f.get_velocities()[lithium] for f in frames])  # (n_frames, n_li, 3)
    max_lag = min(settings.vdos_max_lag_fs or dt * (len(frames) // 2), dt * (len(frames) // 2))
    spectrum = vdos(velocities, dt, masses=frames[0].get_masses()[lithium], max_lag_fs=max_lag)
    write_text_atomic(out_dir / "vdos_li.csv", "frequency_THz,dos_per_THz\n" + "".join(
        f"{f:.5g},{d:.6g}\n" for f, d in zip(spectrum.frequency_THz, spectrum.dos)))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.plot(g.r, g.partial["Li", "C"])
    if cn is not None:
        ax.axvline(cn[1], color="k", lw=0.8, ls="--")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g_LiC(r)")
    fig.tight_layout()
    save_png(fig, out_dir / "rdf_li_c.png")
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    shown = spectrum.frequency_THz <= 40
    ax.plot(spectrum.frequency_THz[shown], spectrum.dos[shown])
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("Li VDOS (states/THz)")
    fig.tight_layout()
    save_png(fig, out_dir / "vdos_li.png")
    shown &= spectrum.frequency_THz >= 1.0  # the peak and mean of the vibrations, without the diffusive zero-frequency part
    weights = spectrum.dos[shown]
    return {
        "host": config.analysis.md_host, "atoms": len(start), "li": len(lithium), "frames": len(frames),
        "time_ps": settings.md.steps * settings.md.timestep_fs / 1000, "T_K": settings.md.temperature_K,
        "mean_T_K": run.mean_temperature_K, "li_c_cn": cn[0] if cn else None, "li_c_r_min_A": cn[1] if cn else None,
        "li_c_cn_within_cutoff": cn_fixed[0] if cn_fixed else None, "li_c_cutoff_A": settings.li_c_cutoff_A,
        "li_c_peak_A": float(g.r[int(np.argmax(g.partial["Li", "C"]))]),
        "li_vdos_peak_THz": float(spectrum.frequency_THz[shown][int(np.argmax(weights))]),
        "li_vdos_mean_THz": float(np.trapezoid(spectrum.frequency_THz[shown] * weights, spectrum.frequency_THz[shown]) / np.trapezoid(weights, spectrum.frequency_THz[shown])),
    }


def stage_analysis(config: LiCarbonConfig, registry: Registry) -> dict[str, Any]:
    """Intercalation energies (GAP vs reference), held-out test errors, MD analysis."""
    structures = labeled_structures(config)
    energies, forces = predict(config.output / "models" / "li_gap.pt", structures)
    rows = intercalation_energies(structures, energies)
    write_json_atomic(config.output / "intercalation.json", rows)
    if rows:
        plot_intercalation(rows, config.output / "intercalation.png")
    test = [k for k, a in enumerate(structures) if a.info["test"]]
    test_li = [k for k in test if structures[k].info["n_li"] > 0]
    carbon_test = [structures[k] for k in test if is_carbon(structures[k])]
    carbon_energies, carbon_forces = predict(config.output / "models" / "carbon.pt", carbon_test) if carbon_test else (np.zeros(0), [])
    pick = lambda ks: ([structures[k] for k in ks], energies[ks], [forces[k] for k in ks])  # noqa: E731
    return {
        "intercalation": {
            "n": len(rows), "rmse_meV_per_Li_train_hosts": rmse_meV([r for r in rows if not r["test"]]),
            "rmse_meV_per_Li_test_hosts": rmse_meV([r for r in rows if r["test"]]),
            "reference_range_eV": [min(r["reference_eV"] for r in rows), max(r["reference_eV"] for r in rows)] if rows else None,
            "by_host": rows,
        },
        "test": {"li_gap_all": errors(*pick(test)), "li_gap_with_li": errors(*pick(test_li)),
                 "carbon_model_on_carbon": errors(carbon_test, carbon_energies, carbon_forces)},
        "md": md_analysis(config),
    }


# ---------------------------------------------------------------------------------------------
# Running the stages
# ---------------------------------------------------------------------------------------------

STAGES: list[tuple[str, Callable[[LiCarbonConfig, Registry], dict[str, Any]]]] = [
    ("data", stage_data),
    ("carbon", stage_carbon),
    ("li_gap", stage_li_gap),
    ("analysis", stage_analysis),
]


def run_stages(config: LiCarbonConfig, registry: Registry, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage whose ``<output>/<stage>.json`` does not exist yet; write the stage's
    file, then ``results.json`` and ``summary.md`` with every finished stage. Returns the results."""
    return study_stages(STAGES, config, registry, config.output, summary, echo)


def summary(results: dict[str, Any]) -> str:
    """The finished stages' times and main numbers as markdown."""
    return stages_summary("Li in carbon example", STAGES, results, _headline)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _headline(name: str, r: dict[str, Any]) -> str:
    """One line of a stage's result."""
    if name == "data":
        return (f"{r['labeled']} of {r['structures']} structures labeled ({r['atoms_min']}-{r['atoms_max']} atoms), {r['failed']} failed;"
                f" {r['test_structures']} held out (hosts {', '.join(r['test_hosts']) or 'none'})")
    if name in ("carbon", "li_gap"):
        v = r["validation"] or r["train"]
        which = "validation" if r["validation"] else "train"
        return f"{r['n_train']} train / {r['n_validation']} validation; {which} RMSE {v['energy_rmse_meV_per_atom']:.1f} meV/atom, {v['force_rmse_eV_per_A']:.3f} eV/Å"
    i, t, md = r["intercalation"], r["test"], r["md"]
    test = t["li_gap_all"]
    test_text = f"{test['energy_rmse_meV_per_atom']:.1f} meV/atom, {test['force_rmse_eV_per_A']:.3f} eV/Å" if test["n"] else "no test set"
    return (f"E_int RMSE {_fmt(i['rmse_meV_per_Li_train_hosts'])} (training hosts) / {_fmt(i['rmse_meV_per_Li_test_hosts'])} (held-out) meV/Li"
            f" over {i['n']} structures; held-out test {test_text}; MD ({md['host']}, {md['li']} Li, {md['time_ps']:g} ps):"
            f" Li-C CN {_fmt(md['li_c_cn'], 2)} to the first minimum ({_fmt(md['li_c_r_min_A'], 2)} Å), {_fmt(md['li_c_cn_within_cutoff'], 2)}"
            f" within {md['li_c_cutoff_A']:g} Å, Li VDOS peak {md['li_vdos_peak_THz']:.1f} THz")


def main(argv: list[str] | None = None) -> int:
    """``python scripts/li_carbon_example.py CONFIG``: run the stages; 0, or 2 with one line on stderr."""
    from pesmith.cli.common import config_script_main

    def run(path: Path) -> str:
        registry = Registry(entry_points=False)
        return summary(run_stages(load_config(path, registry), registry))

    return config_script_main(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
