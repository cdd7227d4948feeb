"""The SevenNet universal potentials as a reference (checkpoints ship in the PyPI package).

References
----------
Y. Park et al., "Scalable parallel algorithm for graph neural network interatomic potentials in
molecular dynamics simulations", J. Chem. Theory Comput. 20, 4857 (2024),
doi:10.1021/acs.jctc.4c00190 (SevenNet, SevenNet-0). SevenNet-0 and SevenNet-l3i5 are trained on
Materials Project relaxations (MPtrj, PBE/PBE+U); SevenNet-MF-0 on MPtrj plus r2SCAN data, with
one output per fidelity (``modal``), of which ``"PBE"`` sits on the PBE scale.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any
from unittest import mock

from ase.calculators.calculator import Calculator

from pesmith.errors import ReferenceSetupError
from pesmith.reference import package_version

from .base import CalculatorReference

INSTALL = "pip install 'pesmith[sevennet]'"


@lru_cache(maxsize=1)
def shipped_models() -> tuple[str, ...]:
    """Names of the pretrained models whose checkpoint is on this machine (inside the installed
    sevenn or its cache, ``~/.cache/sevennet``), e.g. ``("7net-0", "7net-l3i5", ...)``.

    sevenn also knows larger models that it would download from GitHub at load time; those are
    left out (resolving their names here raises instead of downloading).
    """
    from sevenn import util

    def refuse(path: str, url: str) -> str:
        raise FileNotFoundError(path)

    names = []
    with mock.patch.object(util, "download_checkpoint", refuse):
        for name in util.get_available_pretrained_models():
            try:
                util.pretrained_name_to_path(name)
            except (FileNotFoundError, ValueError):
                continue
            names.append(name)
    return tuple(names)


@lru_cache(maxsize=2)
def load_checkpoint(name: str):
    """The :class:`sevenn.checkpoint.SevenNetCheckpoint` of pretrained model ``name`` (0.2 s)."""
    from sevenn import util

    return util.load_checkpoint(name)


@lru_cache(maxsize=2)
def load_model(name: str):
    """The torch model of pretrained checkpoint ``name``, built once per process (1-3 s)."""
    return load_checkpoint(name).build_model()


def modals_of(name: str) -> list[str]:
    """The fidelities (``modal`` values) of a multi-fidelity model; empty for the others."""
    from sevenn import _keys

    return list(load_checkpoint(name).config.get(_keys.MODAL_MAP) or {})


class SevenNetReference(CalculatorReference):
    """SevenNet universal potential (PBE-like energies; pip install 'pesmith[sevennet]').

    Energies in eV, forces in eV/Å, stress in eV/Å^3 (ASE sign), from the model in float32.
    A calculation uses the torch intra-op threads of the calling process
    (``torch.get_num_threads()``, ``OMP_NUM_THREADS``); SevenNet sets none of its own.

    Parameters
    ----------
    model
        Pretrained checkpoint shipped with sevenn: ``"7net-l3i5"`` (the default: closest to GPAW
        PBE for Li-Si in docs/references.md, about 3x slower than the others), ``"7net-0"``,
        ``"7net-mf-0"`` (:func:`shipped_models` lists those installed).
    modal
        Fidelity of a multi-fidelity model (``"PBE"`` or ``"R2SCAN"`` for ``7net-mf-0``);
        ``None`` for the others.
    device
        torch device, ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ReferenceSetupError
        sevenn missing, a model it does not ship, a missing or unknown ``modal``.
    """

    def __init__(self, model: str = "7net-l3i5", modal: str | None = None, device: str = "cpu"):
        try:
            import sevenn  # noqa: F401
        except ImportError as exc:
            raise ReferenceSetupError(f"sevenn is not installed: {INSTALL} ({exc})") from exc
        self.model = model
        self.modal = modal
        self.device = device
        available = shipped_models()
        if model not in available:
            raise ReferenceSetupError(
                f"sevennet: unknown model {model!r}; the installed sevenn {package_version('sevenn').split()[-1]}"
                f" ships: {', '.join(available)}"
            )
        modals = modals_of(model)
        if modals and modal not in modals:
            what = "needs a modal" if modal is None else f"has no modal {modal!r}"
            raise ReferenceSetupError(f"sevennet: model {model!r} {what}; set modal to one of: {', '.join(modals)}")
        if not modals and modal is not None:
            raise ReferenceSetupError(f"sevennet: model {model!r} has a single fidelity; remove modal ({modal!r})")

    def prepare(self) -> None:
        """Build the model and import the calculator (torch_geometric, pandas: 3 s on 2 shared
        cores), so that time-limited children forked from this process start warm."""
        try:
            load_model(self.model)
            import sevenn.calculator  # noqa: F401
        except Exception as exc:
            raise ReferenceSetupError(f"sevennet: cannot load model {self.model!r}: {type(exc).__name__}: {exc}") from exc

    def make_calculator(self) -> Calculator:
        from sevenn.calculator import SevenNetCalculator

        self.prepare()
        with warnings.catch_warnings():  # "No tensor product accelerator is enabled", once per structure
            warnings.filterwarnings("ignore", message="No tensor product accelerator", category=UserWarning)
            return SevenNetCalculator(load_model(self.model), file_type="model_instance", device=self.device, modal=self.modal)

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "modal": self.modal, "device": self.device}

    def code_version(self) -> str:
        modal = f", modal {self.modal}" if self.modal else ""
        return f"{package_version('sevenn')} (model {self.model}{modal})"
