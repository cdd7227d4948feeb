"""The CHGNet universal potential as a reference (weights ship in the PyPI package).

References
----------
B. Deng et al., "CHGNet as a pretrained universal neural network potential for charge-informed
atomistic modelling", Nat. Mach. Intell. 5, 1031 (2023), doi:10.1038/s42256-023-00716-3.
Trained on Materials Project GGA/GGA+U relaxations (MPtrj), so its energies sit on the PBE scale.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from functools import lru_cache
from typing import Any

from ase.calculators.calculator import Calculator

from pesmith.errors import ReferenceSetupError
from pesmith.reference import package_version

from .base import CalculatorReference


# chgnet (0.4.2) builds cell volumes with torch.tensor() from tensors that require grad (for the
# stress): torch warns about chgnet's own code, once in every process that labels.
CHGNET_TORCH_WARNING = "Converting a tensor with requires_grad=True to a scalar"


@lru_cache(maxsize=2)
def load_model(version: str):
    """The CHGNet model ``version`` (e.g. ``"0.3.0"``), loaded once per process."""
    from chgnet.model.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet v0.3.0 initialized with ...", whatever `verbose`
        return CHGNet.load(model_name=version, verbose=False)


@lru_cache(maxsize=1)
def quiet_calculator_class() -> type[Calculator]:
    """chgnet's ASE calculator, with :data:`CHGNET_TORCH_WARNING` silenced while it calculates."""
    from chgnet.model.dynamics import CHGNetCalculator

    class QuietCHGNetCalculator(CHGNetCalculator):
        def calculate(self, *args, **kwargs) -> None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=CHGNET_TORCH_WARNING, category=UserWarning)
                super().calculate(*args, **kwargs)

    return QuietCHGNetCalculator


class CHGNetReference(CalculatorReference):
    """CHGNet universal potential (PBE-like energies; pip install 'pesmith[chgnet]').

    Parameters
    ----------
    model
        Pretrained model version shipped with chgnet, e.g. ``"0.3.0"``.
    device
        torch device, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, model: str = "0.3.0", device: str = "cpu"):
        try:
            import chgnet  # noqa: F401
        except ImportError as exc:
            raise ReferenceSetupError(f"chgnet is not installed: pip install 'pesmith[chgnet]' ({exc})") from exc
        self.model = model
        self.device = device

    def prepare(self) -> None:
        try:
            load_model(self.model)
        except Exception as exc:
            raise ReferenceSetupError(f"chgnet: cannot load model {self.model!r}: {type(exc).__name__}: {exc}") from exc

    def make_calculator(self) -> Calculator:
        self.prepare()
        model = load_model(self.model)
        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet will run on cpu", once per structure
            return quiet_calculator_class()(model=model, use_device=self.device, on_isolated_atoms="ignore")

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device}

    def code_version(self) -> str:
        return f"{package_version('chgnet')} (model {self.model})"
