"""The Li3PO4 study of Li, Ando et al. (J. Chem. Phys. 147, 214106 (2017)) at small scale, in one command:

    python scripts/li3po4_example.py configs/li3po4.yaml

A neural network on atom-centred symmetry functions (ACSF) is trained on beta-Li3PO4 and
amorphous snapshots labeled by a reference, then used for what the study computes: an amorphous
structure by melt-quench and its RDF, Li vacancy formation energies, NEB barriers of Li vacancy
hops (the network beside the reference on the same endpoints), and Li diffusion from MD and from
kinetic Monte Carlo on the Li sites of the MD, each with an Arrhenius activation energy.

Stages, in order (each a function of the config and the registry returning a JSON-able dict):

1. ``data``: strained, scaled and rattled crystal supercells, Li-vacancy cells and melt-quench
   snapshots of random Li3PO4 cells (driven by the reference), labeled by the reference into
   ``<output>/reference.db``.
2. ``train``: the network (``pesmith.workflows.train``) -> ``<output>/model.pt``; validation RMSE.
3. ``amorphous``: melt-quench of a crystal supercell with the network, relaxation, a short NVT
   run, partial RDFs and coordination numbers (P-O: the PO4 tetrahedra).
4. ``vacancies``: E_f of each inequivalent Li vacancy of a crystal supercell, network and
   reference, mu_Li from bcc Li with the same calculator (the network's also with the reference's mu_Li).
5. ``neb``: climbing-image NEB of the shortest inequivalent Li vacancy hops, network and reference.
6. ``diffusion``: NVT MD of the amorphous cell with the network at several temperatures -> D_Li ->
   Ea; Li sites from the MD, a site network with one barrier, the mean NEB barrier of the network
   (and, for comparison, of the reference), kMC -> D -> Ea.

Each finished stage writes ``<output>/<stage>.json`` (its result and wall time); the results of
all stages are gathered in ``<output>/results.json`` and ``<output>/summary.md``. A rerun skips
every stage whose file exists, so an interrupted run resumes at the stage it was in (labels,
MD trajectories and NEB bands inside a stage resume too). A bad config or input prints one line
on stderr and exits with 2.

Units: Å, eV, K, fs (MD), s (kMC); D in cm^2/s in the summary.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import Atoms, units
from ase.neighborlist import neighbor_list
from pydantic import BaseModel, ConfigDict, Field

from pesmith import ase_files
from pesmith.analysis.diffusion import A2_PER_FS_TO_CM2_PER_S, arrhenius, diffusion_coefficients
from pesmith.analysis.kmc import kmc, network_within, replicas, tracer_diffusion
from pesmith.analysis.rdf import coordination_numbers, rdf
from pesmith.analysis.sites import find_sites
from pesmith.atomic_io import atomic_path, write_text_atomic
from pesmith.cli.common import run_stages as study_stages, stages_summary
from pesmith.config import PluginSettings, check_plugin_options, parse_config, resolve_path, validate_section
from pesmith.errors import ConfigError, PesmithError
from pesmith.labeling import LabelConfig, build_reference, label_structures
from pesmith.parallel import parallel_map
from pesmith.registry import Registry
from pesmith.search.initial_set import RattleSettings, ScaleSettings, read_crystal, scaled_and_rattled, with_vacancies
from pesmith.simulate.dynamics import MDSettings, run_md
from pesmith.simulate.md import MeltQuenchSettings, melt_quench
from pesmith.simulate.neb import NEBSettings, run_neb
from pesmith.simulate.packing import random_cell
from pesmith.simulate.relax import RelaxSettings, relax_positions
from pesmith.simulate.vacancy import equivalent_sites, vacancy_formation

A2_PER_S_TO_CM2_PER_S = 1e-16
Supercell = tuple[int, int, int]
LI3PO4 = {"Li": 3, "P": 1, "O": 4}  # one formula unit


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class AmorphousData(Section):
    """Random Li3PO4 cells melt-quenched with the reference; snapshots go to the training set."""

    cells: int = Field(2, ge=0, description="random cells (one worker task each)")
    formula_units: int = Field(4, ge=1, description="Li3PO4 units per cell (8 atoms each)")
    volume_per_atom: float = Field(10.06, gt=0, description="Å^3 per atom (the crystal's is 10.06)")
    min_distance: float = Field(1.4, gt=0, description="Å, closest two atoms of the random start")
    melt_quench: MeltQuenchSettings = Field(default_factory=MeltQuenchSettings)
    snapshots: int = Field(6, ge=1, description="evenly spaced frames kept per cell")


class DataStage(Section):
    """Stage 1: the training structures and their reference labels."""

    crystal: Path = Field(description="the beta-Li3PO4 cell (extxyz)")
    supercells: list[Supercell] = Field(default_factory=lambda: [(1, 1, 1)], description="repeats of the crystal")
    scale: ScaleSettings = Field(default_factory=ScaleSettings)
    rattle: RattleSettings = Field(default_factory=RattleSettings)
    strain: float = Field(0.03, ge=0, lt=0.3, description="largest component of a random symmetric strain")
    strained: int = Field(4, ge=0, description="strained (and rattled) copies per supercell")
    vacancies: int = Field(2, ge=0, description="copies per supercell with one random Li removed (and rattled)")
    amorphous: AmorphousData = Field(default_factory=AmorphousData)
    time_limit: float | None = Field(None, gt=0, description="s per label; beyond it the structure fails")


class TrainStage(Section):
    """Stage 2: the ``descriptor``, ``model`` and ``training`` sections of a ``pesmith train`` config."""

    descriptor: PluginSettings
    model: PluginSettings
    training: dict[str, Any] = Field(default_factory=dict)
    validation_fraction: float = Field(0.1, gt=0, lt=1)


class AmorphousStage(Section):
    """Stage 3: melt-quench with the network, relaxation, NVT run, RDF."""

    supercell: Supercell = (2, 2, 2)
    melt_quench: MeltQuenchSettings = Field(default_factory=MeltQuenchSettings)
    min_distance: float = Field(1.0, gt=0, description="Å: the melt-quench stops if two atoms come closer (the model failed)")
    relax: RelaxSettings = Field(default_factory=lambda: RelaxSettings(fmax=0.05, steps=500))
    nvt: MDSettings = Field(default_factory=lambda: MDSettings(ensemble="bussi", temperature_K=300.0, steps=1000, interval=10))
    r_max: float = Field(6.0, gt=0, description="Å, RDF range")
    bins: int = Field(120, ge=10, description="RDF bins")


class VacancyStage(Section):
    """Stages 4 and 5: the crystal supercell of the vacancies and hops, and their relaxations."""

    supercell: Supercell = (2, 2, 1)
    relax: RelaxSettings = Field(default_factory=lambda: RelaxSettings(fmax=0.05, steps=500))


class NEBStage(Section):
    """Stage 5: the shortest inequivalent Li vacancy hops of the vacancy supercell."""

    hops: int = Field(2, ge=1, le=10, description="hops, shortest first")
    max_hop: float = Field(3.6, gt=0, description="Å, longest Li-Li distance taken as a hop")
    band: NEBSettings = Field(default_factory=lambda: NEBSettings(images=3, fmax=0.1, steps=200, relax_endpoints=False))


class SiteSettings(Section):
    """Li sites from the MD (:func:`pesmith.analysis.sites.find_sites`), Å."""

    spacing: float = Field(0.2, gt=0)
    smoothing: float = Field(0.3, gt=0)
    min_separation: float = Field(1.2, gt=0)
    radius: float = Field(0.8, gt=0)
    min_occupancy: float = Field(0.01, ge=0)


class KMCSettings(Section):
    """kMC on the Li site network, one barrier for every hop: the mean NEB barrier of the network,
    and for comparison of the reference (:func:`mean_barrier`)."""

    r_cut: float = Field(3.5, gt=0, description="Å, longest hop between sites")
    hops_per_carrier: float = Field(200.0, gt=0, description="run length at each temperature, in hops per Li if no hop were blocked")
    records: int = Field(200, ge=10, description="recorded frames per run")
    copies: int = Field(8, ge=1, description="independent copies of the network in one run (statistics)")
    nu: float = Field(1e13, gt=0, description="1/s, attempt frequency")


class DiffusionStage(Section):
    """Stage 6: MD and kMC diffusion of Li in the amorphous cell."""

    temperatures_K: list[float] = Field(min_length=2, description="K, at least 2 (Arrhenius)")
    md: MDSettings = Field(default_factory=lambda: MDSettings(ensemble="bussi", timestep_fs=1.0, steps=5000, interval=20))
    n_blocks: int = Field(4, ge=2, description="blocks of the MSD error bar")
    sites: SiteSettings = Field(default_factory=SiteSettings)
    kmc: KMCSettings = Field(default_factory=KMCSettings)


class Li3PO4Config(Section):
    """The example's config (configs/li3po4.yaml)."""

    output: Path = Field(description="folder of every output")
    seed: int = 0
    workers: int = Field(1, ge=1, description="processes for labeling and the MD temperatures (1 thread each)")
    reference: PluginSettings
    data: DataStage
    train: TrainStage
    amorphous: AmorphousStage = Field(default_factory=AmorphousStage)
    vacancies: VacancyStage = Field(default_factory=VacancyStage)
    neb: NEBStage = Field(default_factory=NEBStage)
    diffusion: DiffusionStage


def load_config(path: Path, registry: Registry) -> Li3PO4Config:
    """Read and validate the config; paths resolve against its folder, plugin keys against the plugins.

    Raises
    ------
    ConfigError
        Naming the file and the key.
    """
    config = parse_config(path, Li3PO4Config)
    base = path.resolve().parent
    config.output = resolve_path(base, config.output)
    config.data.crystal = resolve_path(base, config.data.crystal)
    if not config.data.crystal.is_file():
        raise ConfigError(f"{path}: key 'data.crystal': {config.data.crystal} is not a file")
    check_plugin_options(path, "reference", config.reference, registry, implicit=())
    check_plugin_options(path, "descriptor", config.train.descriptor, registry, implicit=("species",))
    model_cls = check_plugin_options(path, "model", config.train.model, registry, implicit=("species", "n_features"))
    validate_section(path, "train.training", config.train.training, model_cls.settings_schema)
    if any(n < 1 for cell in (*config.data.supercells, config.amorphous.supercell, config.vacancies.supercell) for n in cell):
        raise ConfigError(f"{path}: supercell repeats must be >= 1")
    return config


# ---------------------------------------------------------------------------------------------
# Stage 1: data
# ---------------------------------------------------------------------------------------------


def strained(cell: Atoms, n: int, strain: float, stdev: float, rng: np.random.Generator) -> list[Atoms]:
    """``n`` copies of ``cell`` under random symmetric strains (components uniform in
    [-strain, strain]), atoms moved with the cell and then rattled by ``stdev`` Å."""
    out = []
    for _ in range(n):
        eps = rng.uniform(-strain, strain, (3, 3))
        atoms = cell.copy()
        atoms.set_cell(cell.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, stdev, atoms.positions.shape)
        out.append(atoms)
    return out


def crystal_structures(crystal: Atoms, settings: DataStage, rng: np.random.Generator) -> list[Atoms]:
    """Scaled, strained and Li-vacancy copies of every supercell of ``crystal``, all rattled."""
    out = []
    for repeat in settings.supercells:
        cell = crystal.repeat(repeat)
        found = scaled_and_rattled(cell, settings.scale, settings.rattle, rng)
        found += strained(cell, settings.strained, settings.strain, settings.rattle.stdev, rng)
        found += with_vacancies(cell, settings.vacancies, settings.rattle.stdev, rng, elements=("Li",))
        for atoms in found:
            atoms.info = {"generated_from": f"beta-Li3PO4 x {repeat}"}
        out += found
    return out


def melt_quench_snapshots(reference: PluginSettings, registry: Registry, settings: AmorphousData, start: tuple[Atoms, int]) -> list[Atoms]:
    """In a worker: ``settings.snapshots`` evenly spaced frames of a melt-quench of ``start``
    (a random cell and its seed) driven by the reference's calculator."""
    atoms, seed = start
    calculator = build_reference(reference, registry, "reference").make_calculator()
    frames = melt_quench(atoms, calculator, settings.melt_quench, np.random.default_rng(seed))
    n = len(frames)
    kept = [frames[round((i + 1) * n / settings.snapshots) - 1] for i in range(min(settings.snapshots, n))]
    for frame in kept:
        frame.info = {"generated_from": f"melt-quench {atoms.get_chemical_formula()}", "target_K": frame.info["target_K"]}
    return kept


def amorphous_structures(config: Li3PO4Config, registry: Registry) -> list[Atoms]:
    """Snapshots of ``data.amorphous.cells`` reference melt-quenches of random Li3PO4 cells."""
    settings = config.data.amorphous
    seeds = np.random.SeedSequence([config.seed, 1]).spawn(settings.cells)
    counts = {symbol: n * settings.formula_units for symbol, n in LI3PO4.items()}
    starts = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        starts.append((random_cell(counts, settings.volume_per_atom, rng, settings.min_distance), int(rng.integers(2**31))))
    task = partial(melt_quench_snapshots, config.reference, registry, settings)
    results = dict(parallel_map(task, starts, workers=config.workers, description="melt-quench with the reference"))
    return [frame for index in range(len(starts)) for frame in results[index]]


def stage_data(config: Li3PO4Config, registry: Registry) -> dict[str, Any]:
    """Write ``structures.xyz`` (once: a rerun labels the same file) and label it into
    ``reference.db`` (resumes: labeled structures are skipped)."""
    structures_path = config.output / "structures.xyz"
    if not structures_path.exists():
        crystal = read_crystal(config.data.crystal)
        structures = crystal_structures(crystal, config.data, np.random.default_rng(config.seed))
        structures += amorphous_structures(config, registry)
        with atomic_path(structures_path) as temporary:
            ase_files.write(temporary, structures, format="extxyz")
    label_config = LabelConfig(
        structures=structures_path, database=config.output / "reference.db", reference=config.reference,
        workers=config.workers, time_limit=config.data.time_limit, progress=False,
    )
    summary = label_structures(label_config, registry, parallel_map, where="reference")
    sizes = [len(a) for a in ase_files.read(structures_path, format="extxyz")]
    return {
        "structures": summary.n_structures, "labeled": summary.n_labeled + summary.n_skipped, "failed": summary.n_failed,
        "atoms_min": min(sizes), "atoms_max": max(sizes), "reference": {"kind": config.reference.kind, **config.reference.options},
    }


# ---------------------------------------------------------------------------------------------
# Stage 2: train
# ---------------------------------------------------------------------------------------------


def stage_train(config: Li3PO4Config, registry: Registry) -> dict[str, Any]:
    """Train the network on every label of ``reference.db`` into ``model.pt``."""
    from pesmith.config import DataSettings, TrainConfig
    from pesmith.workflows import train

    settings = config.train
    model_cls = registry.get("model", settings.model.kind)
    train_config = TrainConfig(
        data=DataSettings(train=config.output / "reference.db", validation_fraction=settings.validation_fraction, seed=config.seed),
        descriptor=settings.descriptor,
        model=settings.model,
        output=config.output / "model.pt",
        training=model_cls.settings_schema.model_validate({"progress": False, **settings.training}),  # checked by load_config
    )
    report = train(train_config, registry, overwrite=True).report  # a resumed stage rewrites its model
    metrics = report["metrics"]
    return {
        "n_train": report["split"]["n_train"], "n_validation": report["split"]["n_validation"],
        "epochs_run": report["training"].get("epochs_run"), "train_wall_s": round(report["training"]["wall_time_s"], 1),
        "validation": {k: metrics["validation"][k] for k in ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A")},
        "train": {k: metrics["train"][k] for k in ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A")},
        "descriptor": report["config"]["descriptor"], "model": report["config"]["model"],
    }


def network(config: Li3PO4Config):
    """The trained network as an ASE calculator."""
    from pesmith.calculator import PesmithCalculator

    return PesmithCalculator.from_file(config.output / "model.pt")


# ---------------------------------------------------------------------------------------------
# Stage 3: amorphous
# ---------------------------------------------------------------------------------------------


def rdf_summary(frames: list[Atoms], r_max: float, bins: int, path: Path, r_cut: dict[str, float] | None = None) -> dict[str, Any]:
    """Partial RDFs of ``frames`` written to ``path`` (CSV: r in Å, then g of each pair); the
    highest bin of g (Å: the first peak for P-O and Li-O) and the coordination number of P-O,
    Li-O and O-O, counted to the first minimum of g or, for a pair "A-B" in ``r_cut``, to that
    radius (Å; a crystal's g has no smooth minimum)."""
    g = rdf(frames, r_max=r_max, n_bins=bins)
    pairs = [("P", "O"), ("Li", "O"), ("O", "O"), ("Li", "Li")]
    columns = np.column_stack([g.r, g.total, *(g.partial[p] for p in pairs)])
    header = "r_A,total," + ",".join(f"{a}-{b}" for a, b in pairs)
    write_text_atomic(path, header + "\n" + "\n".join(",".join(f"{v:.6g}" for v in row) for row in columns) + "\n")
    out = {}
    for pair in pairs[:3]:
        entry = {"peak_A": float(g.r[int(np.argmax(g.partial[pair]))])}
        radius = (r_cut or {}).get(f"{pair[0]}-{pair[1]}")
        cn = coordination_numbers(g, r_cut=radius, smooth=3)
        if pair in cn:
            entry.update(cn=cn[pair][0], r_min_A=cn[pair][1])
        out[f"{pair[0]}-{pair[1]}"] = entry
    return out


def stage_amorphous(config: Li3PO4Config, registry: Registry) -> dict[str, Any]:
    """Melt-quench a crystal supercell with the network, relax it, run NVT, RDF of the run."""
    settings = config.amorphous
    calculator = network(config)
    start = read_crystal(config.data.crystal).repeat(settings.supercell)
    frames = melt_quench(start, calculator, settings.melt_quench, np.random.default_rng(config.seed), min_distance=settings.min_distance)
    ase_files.write(config.output / "melt_quench.xyz", frames, format="extxyz")
    completed = len(frames) == settings.melt_quench.n_snapshots
    relaxed = relax_positions(frames[-1], calculator, settings.relax)
    ase_files.write(config.output / "amorphous.xyz", relaxed, format="extxyz")
    trajectory = config.output / "amorphous_nvt.xyz"
    run = run_md(relaxed, calculator, settings.nvt, trajectory, config.output / "amorphous_nvt.csv", resume=trajectory.exists())
    nvt = ase_files.read(trajectory, index=":", format="extxyz")
    relaxed.calc = calculator
    mq = settings.melt_quench
    amorphous = rdf_summary(nvt, settings.r_max, settings.bins, config.output / "rdf_amorphous.csv")
    radii = {pair: entry["r_min_A"] for pair, entry in amorphous.items() if "r_min_A" in entry}
    return {
        "atoms": len(start), "formula": start.get_chemical_formula(),
        "melt_K": mq.melt_K, "melt_ps": mq.melt_ps, "quench_ps": mq.quench_ps, "final_K": mq.final_K,
        "quench_rate_K_per_ps": (mq.melt_K - mq.final_K) / mq.quench_ps,
        "melt_quench_completed": completed, "melt_quench_frames": len(frames),
        "relax_converged": bool(relaxed.info["relax_converged"]),
        "energy_per_atom_eV": float(relaxed.get_potential_energy()) / len(relaxed),
        "nvt_K": settings.nvt.temperature_K, "nvt_mean_K": run.mean_temperature_K, "nvt_frames": len(nvt),
        "rdf": amorphous,
        "rdf_crystal": rdf_summary([start], settings.r_max, settings.bins, config.output / "rdf_crystal.csv", radii),
    }


# ---------------------------------------------------------------------------------------------
# Stage 4: vacancies
# ---------------------------------------------------------------------------------------------


def reference_calculator(config: Li3PO4Config, registry: Registry):
    """The reference plugin's ASE calculator."""
    return build_reference(config.reference, registry, "reference").make_calculator()


def stage_vacancies(config: Li3PO4Config, registry: Registry) -> dict[str, Any]:
    """E_f of one Li vacancy per class of equivalent Li sites, with the network and the reference,
    each with mu_Li of its own bcc Li; for the network also with the reference's mu_Li
    (``E_f_mu_reference_eV``: the defect energy difference alone, if bcc Li is far from its data)."""
    bulk = read_crystal(config.data.crystal).repeat(config.vacancies.supercell)
    out: dict[str, Any] = {"atoms": len(bulk)}
    for name, calculator in (("reference", reference_calculator(config, registry)), ("network", network(config))):
        vacancies = vacancy_formation(bulk, calculator, element="Li", settings=config.vacancies.relax)
        out[name] = {
            "mu_Li_eV": vacancies[0].chemical_potential,
            "sites": [{"site": v.site, "multiplicity": v.multiplicity, "E_f_eV": v.formation_energy, "steps": v.steps} for v in vacancies],
        }
    shift = out["reference"]["mu_Li_eV"] - out["network"]["mu_Li_eV"]
    for site in out["network"]["sites"]:
        site["E_f_mu_reference_eV"] = site["E_f_eV"] + shift
    return out


# ---------------------------------------------------------------------------------------------
# Stage 5: NEB
# ---------------------------------------------------------------------------------------------


def vacancy_hops(bulk: Atoms, n: int, max_hop: float) -> list[tuple[int, int, np.ndarray]]:
    """The ``n`` shortest inequivalent Li-Li pairs (i, j, vector from i to the image of j in Å)
    of ``bulk`` up to ``max_hop`` Å: Li i hops into the vacancy at j. Two pairs are equivalent
    when their sites are of the same classes (:func:`equivalent_sites`) and their lengths agree
    to 0.01 Å.

    Raises
    ------
    ConfigError
        Fewer than ``n`` such pairs.
    """
    classes = {site: k for k, members in enumerate(equivalent_sites(bulk, "Li")) for site in members}
    i, j, d, vectors = neighbor_list("ijdD", bulk, max_hop)
    seen, hops = set(), []
    for k in np.argsort(d, kind="stable"):
        a, b = int(i[k]), int(j[k])
        if a in classes and b in classes:
            key = (*sorted((classes[a], classes[b])), round(float(d[k]), 2))
            if key not in seen:
                seen.add(key)
                hops.append((a, b, vectors[k]))
    if len(hops) < n:
        raise ConfigError(f"neb.hops: {n} hops asked, but {bulk.get_chemical_formula()} has {len(hops)} inequivalent Li-Li pairs within max_hop = {max_hop} Å; raise max_hop")
    return hops[:n]


def hop_endpoints(bulk: Atoms, i: int, j: int, vector: np.ndarray) -> tuple[Atoms, Atoms]:
    """The cells before and after Li ``i`` hops by ``vector`` (Å) into the vacancy at ``j`` (atom
    j removed from both; in the final cell atom i sits on the image of j at the hop's end)."""
    initial = bulk.copy()
    del initial[j]
    final = initial.copy()
    moved = i - (i > j)
    final.positions[moved] = bulk.positions[i] + vector
    return initial, final


def stage_neb(config: Li3PO4Config, registry: Registry) -> dict[str, Any]:
    """Barriers of the shortest Li vacancy hops with the network and the reference, same endpoints
    (each relaxes them with its own calculator on ``vacancies.relax``, then the band's own
    ``relax_endpoints`` may tighten them). Bands go to ``neb/``; a rerun continues them."""
    bulk = read_crystal(config.data.crystal).repeat(config.vacancies.supercell)
    calculators = {"network": network(config), "reference": reference_calculator(config, registry)}
    hops = []
    for k, (i, j, vector) in enumerate(vacancy_hops(bulk, config.neb.hops, config.neb.max_hop)):
        initial, final = hop_endpoints(bulk, i, j, vector)
        entry: dict[str, Any] = {"from_site": i, "to_site": j, "length_A": float(np.linalg.norm(vector))}
        for name, calculator in calculators.items():
            band = config.output / "neb" / f"hop{k}_{name}.xyz"
            ends = [relax_positions(atoms, calculator, config.vacancies.relax) for atoms in (initial, final)]
            result = run_neb(*ends, calculator, config.neb.band, band, resume=band.exists())
            entry[name] = {
                "barrier_forward_eV": result.barrier_forward, "barrier_backward_eV": result.barrier_backward,
                "converged": result.converged, "steps": result.steps, "max_force_eV_per_A": result.max_force,
                "endpoints_relaxed": all(bool(end.info["relax_converged"]) for end in ends),
            }
        hops.append(entry)
    return {"atoms": len(bulk) - 1, "images": config.neb.band.images, "hops": hops}


# ---------------------------------------------------------------------------------------------
# Stage 6: diffusion
# ---------------------------------------------------------------------------------------------


def md_at(model: Path, atoms: Atoms, settings: MDSettings, folder: Path, temperature_K: float) -> float:
    """In a worker: NVT MD of ``atoms`` at ``temperature_K`` with the model file ``model`` into
    ``folder/md_<T>K.xyz`` (continued if it exists); the mean temperature (K)."""
    from pesmith.calculator import PesmithCalculator

    trajectory = folder / f"md_{temperature_K:g}K.xyz"
    run = run_md(
        atoms, PesmithCalculator.from_file(model), settings.model_copy(update={"temperature_K": temperature_K}),
        trajectory, trajectory.with_suffix(".csv"), resume=trajectory.exists(),
    )
    return run.mean_temperature_K


def md_diffusion(config: Li3PO4Config) -> tuple[list[dict[str, Any]], list[Atoms]]:
    """D_Li (Å^2/fs, block error) at each temperature from NVT MD of the amorphous cell; also
    the frames of the lowest temperature (for the Li sites)."""
    settings = config.diffusion
    amorphous = ase_files.read(config.output / "amorphous.xyz", index=-1, format="extxyz")
    folder = config.output / "diffusion"
    folder.mkdir(exist_ok=True)
    task = partial(md_at, config.output / "model.pt", amorphous, settings.md, folder)
    mean_K = dict(parallel_map(task, settings.temperatures_K, workers=config.workers, description="MD"))
    runs, lowest = [], None
    for index, temperature in enumerate(settings.temperatures_K):
        frames = ase_files.read(folder / f"md_{temperature:g}K.xyz", index=":", format="extxyz")
        fit = diffusion_coefficients(frames, settings.md.timestep_fs * settings.md.interval, n_blocks=settings.n_blocks, species=["Li"])["Li"]
        runs.append({"T_K": temperature, "mean_T_K": mean_K[index], "D_A2_per_fs": fit.D, "D_err_A2_per_fs": fit.D_err,
                     "msd_end_A2": float(fit.msd[-1]), "time_ps": float(fit.time_fs[-1] / 1000)})
        if temperature == min(settings.temperatures_K):
            lowest = frames
    return runs, lowest


def fit_or_reason(T: list[float], D: list[float], D_err: list[float] | None) -> dict[str, Any]:
    """Arrhenius Ea (eV) and D0 of the fit, or why there is none (a D <= 0)."""
    try:
        fit = arrhenius(T, D, D_err)
    except PesmithError as exc:
        return {"reason": str(exc)}
    return {"Ea_eV": fit.Ea_eV, "Ea_err_eV": fit.Ea_err_eV, "D0": fit.D0}


def kmc_diffusion(config: Li3PO4Config, frames: list[Atoms], barrier_eV: float) -> dict[str, Any]:
    """Li sites of ``frames``, a network of hops up to ``kmc.r_cut`` with one barrier, and D
    (Å^2/s, mean of the three directions) from kMC at each temperature."""
    settings = config.diffusion
    sites = find_sites(frames, "Li", **settings.sites.model_dump())
    n_li = int(np.sum(frames[0].symbols == "Li"))
    carriers = min(n_li, len(sites.positions) - 1)
    occupied = np.argsort(-sites.occupancy, kind="stable")[:carriers]  # the most occupied sites
    base = network_within(sites.atoms(), settings.kmc.r_cut, barrier_eV)
    copies = settings.kmc.copies
    net = replicas(base, copies)
    occupied = np.concatenate([occupied + c * len(sites.positions) for c in range(copies)])
    rng = np.random.default_rng(config.seed)
    hops_per_site = base.source.size / len(sites.positions)
    runs = []
    for temperature in settings.temperatures_K:  # the same number of hops at every temperature
        rate = settings.kmc.nu * np.exp(-barrier_eV / (units.kB * temperature))  # 1/s, of one hop
        duration = settings.kmc.hops_per_carrier / (rate * hops_per_site)  # s
        result = kmc(net, occupied, temperature, duration, duration / settings.kmc.records, rng, nu=settings.kmc.nu)
        D, D_err = tracer_diffusion(result)
        runs.append({"T_K": temperature, "D_A2_per_s": float(D.mean()), "D_err_A2_per_s": float(np.sqrt(np.sum(D_err**2)) / 3),
                     "duration_s": duration, "hops": result.n_hops, "blocked": result.blocked})
    return {
        "sites": len(sites.positions), "li_atoms": n_li, "carriers": carriers, "assigned": sites.assigned,
        "hops_in_network": int(base.source.size), "barrier_eV": barrier_eV, "runs": runs,
    }


def mean_barrier(neb: dict[str, Any], who: str) -> float:
    """Mean barrier (eV) of every NEB hop of ``who`` ("network" or "reference") in both directions."""
    return float(np.mean([hop[who][f"barrier_{way}_eV"] for hop in neb["hops"] for way in ("forward", "backward")]))


def stage_diffusion(config: Li3PO4Config, registry: Registry) -> dict[str, Any]:
    """MD diffusion -> Ea; kMC on the MD's Li sites with the mean NEB barrier of the network, and
    of the reference for comparison -> Ea."""
    runs, lowest = md_diffusion(config)
    T = [r["T_K"] for r in runs]
    out: dict[str, Any] = {"md": {"runs": runs, "arrhenius": fit_or_reason(T, [r["D_A2_per_fs"] for r in runs], [r["D_err_A2_per_fs"] for r in runs])}}
    neb = json.loads((config.output / "neb.json").read_text())
    out["kmc"] = {}
    for who in ("network", "reference"):
        result = kmc_diffusion(config, lowest, mean_barrier(neb, who))
        fit = fit_or_reason(T, [r["D_A2_per_s"] for r in result["runs"]], [r["D_err_A2_per_s"] for r in result["runs"]])
        out["kmc"][who] = {**result, "arrhenius": fit}
    return out


# ---------------------------------------------------------------------------------------------
# Running the stages
# ---------------------------------------------------------------------------------------------

STAGES: list[tuple[str, Callable[[Li3PO4Config, Registry], dict[str, Any]]]] = [
    ("data", stage_data),
    ("train", stage_train),
    ("amorphous", stage_amorphous),
    ("vacancies", stage_vacancies),
    ("neb", stage_neb),
    ("diffusion", stage_diffusion),
]


def run_stages(config: Li3PO4Config, registry: Registry, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage whose ``<output>/<stage>.json`` does not exist yet; write the stage's
    file, then ``results.json`` and ``summary.md`` with every finished stage. Returns the results."""
    return study_stages(STAGES, config, registry, config.output, summary, echo)


def summary(results: dict[str, Any]) -> str:
    """The finished stages' times and main numbers as markdown."""
    return stages_summary("Li3PO4 example", STAGES, results, _headline)


def _headline(name: str, r: dict[str, Any]) -> str:
    """One line of a stage's result."""
    if name == "data":
        return f"{r['labeled']} of {r['structures']} structures labeled ({r['atoms_min']}-{r['atoms_max']} atoms), {r['failed']} failed"
    if name == "train":
        v = r["validation"]
        return f"{r['n_train']} train / {r['n_validation']} validation; validation RMSE {v['energy_rmse_meV_per_atom']:.1f} meV/atom, {v['force_rmse_eV_per_A']:.3f} eV/Å"
    if name == "amorphous":
        po = r["rdf"]["P-O"]
        cn = f", CN {po['cn']:.2f}" if "cn" in po else ""
        return f"{r['atoms']} atoms, {r['quench_rate_K_per_ps']:.0f} K/ps, quench completed {r['melt_quench_completed']}; P-O peak {po['peak_A']:.2f} Å{cn}"
    if name == "vacancies":
        own = "; ".join(f"{who}: E_f " + ", ".join(f"{s['E_f_eV']:.2f}" for s in r[who]["sites"]) + " eV" for who in ("network", "reference"))
        return own + "; network with the reference's mu_Li: " + ", ".join(f"{s['E_f_mu_reference_eV']:.2f}" for s in r["network"]["sites"]) + " eV"
    if name == "neb":
        return "; ".join(f"{h['length_A']:.2f} Å hop: network {h['network']['barrier_forward_eV']:.2f} eV, reference {h['reference']['barrier_forward_eV']:.2f} eV" for h in r["hops"])
    md = r["md"]["arrhenius"]
    def ea(fit: dict[str, Any]) -> str:
        if "Ea_eV" not in fit:
            return f"no fit ({fit['reason']})"
        return f"{fit['Ea_eV']:.2f} eV" + (f" ± {fit['Ea_err_eV']:.2f}" if fit["Ea_err_eV"] is not None else "")
    Ds = ", ".join(f"{x['T_K']:g} K {x['D_A2_per_fs'] * A2_PER_FS_TO_CM2_PER_S:.1e}" for x in r["md"]["runs"])
    kmc = "; ".join(f"kMC with the {who}'s barrier {k['barrier_eV']:.2f} eV: Ea {ea(k['arrhenius'])}" for who, k in r["kmc"].items())
    return f"MD D_Li (cm^2/s) {Ds}; Ea MD {ea(md)}; {r['kmc']['network']['sites']} Li sites; {kmc}"


def main(argv: list[str] | None = None) -> int:
    """``python scripts/li3po4_example.py CONFIG``: run the stages; 0, or 2 with one line on stderr."""
    from pesmith.cli.common import config_script_main

    def run(path: Path) -> str:
        registry = Registry(entry_points=False)
        return summary(run_stages(load_config(path, registry), registry))

    return config_script_main(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
