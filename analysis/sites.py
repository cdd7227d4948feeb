"""Sites of a mobile species found in an MD trajectory: the nodes of a kMC site network.

In an amorphous host there is no lattice to read Li sites from; they are where Li spends its
time. The positions of the species over all frames are histogrammed on a periodic grid over the
cell (fractional coordinates, about ``spacing`` Å per cell), the histogram is smoothed with a
Gaussian of ``smoothing`` Å (periodic), and every local maximum of that density is a candidate
site; candidates closer than ``min_separation`` Å (minimum image) merge into the denser. Each
recorded position then goes to its nearest site if within ``radius`` Å, and each site moves to the
mean of its positions. A site holding fewer than ``min_occupancy`` atoms per frame on average
is dropped (a place passed through, not a site). This is the probability-density route of
pymatgen-analysis-diffusion's ``ProbabilityDensityAnalysis`` and of the site analyses of MD of
amorphous electrolytes (e.g. Li, Ando et al., J. Chem. Phys. 147, 214106 (2017)).

The hops seen in the trajectory come with the sites: ``transitions[a, b]`` counts the times an
atom last assigned to site a was next assigned to site b (frames outside every radius are
skipped), so a network can be built from the observed hops or from all site pairs within a
distance (:func:`pesmith.analysis.kmc.network_within`, with barriers from NEB or a table).

Units: Å. The grid and the smoothing use the cell's axis lengths, which is exact for
orthorhombic cells and an approximation (slightly anisotropic smoothing) for skewed ones; the
minimum image assumes ``radius`` and ``min_separation`` below half the cell's smallest width.
Memory: the recorded positions, 24 bytes x atoms of the species x frames (24 MB for 100 Li over
10,000 frames), plus the grid (8 bytes per voxel, 2 MB for a 25 Å cell at 0.2 Å).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from scipy import ndimage

from pesmith.errors import ConfigError, DataError

CHUNK = 20_000  # positions per block when assigning them to sites (chunk x sites x 3 floats)


@dataclass(frozen=True)
class Sites:
    """Sites of one species.

    Attributes
    ----------
    positions : (n_sites, 3) Å, inside the cell.
    occupancy : (n_sites,) mean number of atoms on the site per frame.
    transitions : (n_sites, n_sites) observed hops a -> b (integer counts).
    cell : (3, 3) Å, of the first frame; pbc : (3,) bool.
    assigned : share of all recorded positions within ``radius`` of a site.
    n_frames : frames read.
    """

    positions: np.ndarray
    occupancy: np.ndarray
    transitions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    assigned: float
    n_frames: int

    def atoms(self, symbol: str = "X") -> Atoms:
        """The sites as an ``ase.Atoms`` (for :func:`pesmith.analysis.kmc.network_within` or a file),
        each site's occupancy in the ``occupancy`` array."""
        atoms = Atoms([symbol] * len(self.positions), positions=self.positions, cell=self.cell, pbc=self.pbc)
        atoms.set_array("occupancy", self.occupancy.copy())
        return atoms

    def hop_pairs(self, min_count: int = 1) -> np.ndarray:
        """(n_pairs, 2) site pairs a < b with at least ``min_count`` observed hops either way."""
        both = self.transitions + self.transitions.T
        a, b = np.nonzero(np.triu(both, k=1) >= min_count)
        return np.stack([a, b], axis=1)


def find_sites(
    trajectory: Iterable[Atoms],
    species: str = "Li",
    spacing: float = 0.2,
    smoothing: float = 0.3,
    min_separation: float = 1.2,
    radius: float = 0.8,
    min_occupancy: float = 0.01,
) -> Sites:
    """Sites of ``species`` from the frames of an MD trajectory (see the module docstring).

    Parameters
    ----------
    trajectory : frames with a cell (``ase.Atoms``), one composition; read once.
    species : chemical symbol of the mobile atoms.
    spacing : grid spacing, Å.
    smoothing : Gaussian width of the density, Å.
    min_separation : closest two sites may be, Å.
    radius : a position belongs to its nearest site within this distance, Å.
    min_occupancy : fewest atoms per frame, on average, a site must hold.

    Raises
    ------
    DataError : no frames, a frame without a cell or with another number of ``species`` atoms,
        no atom of ``species``, or no site left.
    ConfigError : a length <= 0 or a negative ``min_occupancy``.
    """
    _check(spacing=spacing, smoothing=smoothing, min_separation=min_separation, radius=radius)
    if min_occupancy < 0:
        raise ConfigError(f"min_occupancy must be >= 0 atoms per frame, got {min_occupancy}")
    if species not in atomic_numbers:
        raise ConfigError(f"species must be a chemical symbol, got {species!r}")
    fractional, cell, pbc = _fractional_positions(trajectory, atomic_numbers[species], species)
    n_frames = fractional.shape[0]
    lengths = np.linalg.norm(cell, axis=1)
    shape = tuple(int(max(4, np.ceil(length / spacing))) for length in lengths)
    flat = fractional.reshape(-1, 3) % 1.0
    density = _density(flat, shape, smoothing / (lengths / np.array(shape)))
    candidates = _candidates(density, cell, pbc, min_separation)
    site_fractional = (np.array(candidates) + 0.5) / np.array(shape)
    nearest = _assign(flat, site_fractional, cell, pbc, radius)
    site_fractional = _centroids(flat, nearest, site_fractional, cell, pbc)
    counts = np.bincount(nearest[nearest >= 0], minlength=len(site_fractional))
    keep = (counts > 0) & (counts / n_frames >= min_occupancy)
    if not keep.any():
        raise DataError(f"no {species} site holds {min_occupancy} atoms per frame: lower min_occupancy or raise radius ({radius} Å)")
    site_fractional = site_fractional[keep]
    nearest = _assign(flat, site_fractional, cell, pbc, radius)  # again, without the dropped sites
    counts = np.bincount(nearest[nearest >= 0], minlength=len(site_fractional))
    transitions = _transitions(nearest.reshape(n_frames, -1), len(site_fractional))
    return Sites(
        positions=(site_fractional % 1.0) @ cell,
        occupancy=counts / n_frames,
        transitions=transitions,
        cell=cell,
        pbc=pbc,
        assigned=float(np.mean(nearest >= 0)),
        n_frames=n_frames,
    )


def _check(**lengths: float) -> None:
    for name, value in lengths.items():
        if not value > 0:
            raise ConfigError(f"{name} must be a positive length in Å, got {value}")


def _fractional_positions(trajectory: Iterable[Atoms], number: int, species: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_frames, n_species_atoms, 3) fractional coordinates, the first frame's cell and pbc."""
    frames, cell, pbc, count = [], None, None, None
    for index, atoms in enumerate(trajectory):
        if atoms.cell.rank < 3:
            raise DataError(f"frame {index} has no cell: finding sites needs the cell of every frame")
        mask = atoms.numbers == number
        if count is None:
            count, cell, pbc = int(mask.sum()), atoms.cell[:].copy(), atoms.pbc.copy()
            if count == 0:
                raise DataError(f"frame 0 has no {species} atom: name the mobile species with species=")
        elif int(mask.sum()) != count:
            raise DataError(f"frame {index} has {int(mask.sum())} {species} atoms, frame 0 has {count}: find sites in a trajectory of one composition")
        frames.append(atoms.cell.scaled_positions(atoms.positions[mask]))
    if not frames:
        raise DataError("the trajectory has no frames")
    return np.array(frames), cell, pbc


def _density(flat: np.ndarray, shape: tuple[int, int, int], sigma_voxels: np.ndarray) -> np.ndarray:
    """Periodic histogram of fractional positions on ``shape``, Gaussian-smoothed (voxels)."""
    index = np.minimum((flat * np.array(shape)).astype(np.int64), np.array(shape) - 1)
    linear = np.ravel_multi_index(index.T, shape)
    histogram = np.bincount(linear, minlength=int(np.prod(shape))).reshape(shape).astype(float)
    return ndimage.gaussian_filter(histogram, sigma=sigma_voxels, mode="wrap")


def _candidates(density: np.ndarray, cell: np.ndarray, pbc: np.ndarray, min_separation: float) -> list[np.ndarray]:
    """Grid indices of the local maxima of ``density``, densest first, none closer than
    ``min_separation`` Å to a denser one."""
    peaks = (density == ndimage.maximum_filter(density, size=3, mode="wrap")) & (density > 0)
    index = np.argwhere(peaks)
    order = np.argsort(-density[tuple(index.T)], kind="stable")
    shape = np.array(density.shape)
    kept: list[np.ndarray] = []
    kept_fractional = np.empty((0, 3))
    for k in order:
        fractional = (index[k] + 0.5) / shape
        if len(kept) and np.min(_distances(fractional[None, :], kept_fractional, cell, pbc)) < min_separation:
            continue
        kept.append(index[k])
        kept_fractional = np.vstack([kept_fractional, fractional])
    return kept


def _distances(points: np.ndarray, sites: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """(n_points, n_sites) minimum-image distances, Å, between fractional coordinates."""
    return np.linalg.norm(_minimum_image(sites[None, :, :] - points[:, None, :], pbc) @ cell, axis=-1)


def _minimum_image(fractional: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    out = fractional.copy()
    out[..., pbc] -= np.round(out[..., pbc])
    return out


def _assign(flat: np.ndarray, sites: np.ndarray, cell: np.ndarray, pbc: np.ndarray, radius: float) -> np.ndarray:
    """Index of each position's nearest site within ``radius`` Å, -1 for none; in blocks."""
    nearest = np.full(len(flat), -1, dtype=np.int64)
    for start in range(0, len(flat), CHUNK):
        d = _distances(flat[start:start + CHUNK], sites, cell, pbc)  # (chunk, n_sites)
        best = np.argmin(d, axis=1)
        within = d[np.arange(len(best)), best] <= radius
        nearest[start:start + CHUNK] = np.where(within, best, -1)
    return nearest


def _centroids(flat: np.ndarray, nearest: np.ndarray, sites: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Each site moved to the mean of its positions (minimum image about the site)."""
    moved = sites.copy()
    for site in range(len(sites)):
        mine = flat[nearest == site]
        if len(mine):
            moved[site] = sites[site] + _minimum_image(mine - sites[site], pbc).mean(axis=0)
    return moved


def _transitions(nearest: np.ndarray, n_sites: int) -> np.ndarray:
    """(n_sites, n_sites) counts of a -> b between an atom's consecutive assigned frames."""
    counts = np.zeros((n_sites, n_sites), dtype=np.int64)
    for column in nearest.T:  # one atom's sites over the frames
        visited = column[column >= 0]
        moves = visited[1:] != visited[:-1]
        np.add.at(counts, (visited[:-1][moves], visited[1:][moves]), 1)
    return counts
