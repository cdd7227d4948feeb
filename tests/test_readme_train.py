"""The README's Python example of `pesmith.workflows.train` runs as written, on the tiny config
in place of the tour's (the tour's training takes minutes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pesmith.errors import ConfigError

from conftest import TINY_TRAINING

ROOT = Path(__file__).resolve().parents[1]
TOUR_CONFIG = "configs/si_nn_tour.yaml"


def readme_train_example() -> str:
    """The README's python block that calls ``train(config, registry, overwrite=True)``."""
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    found = [block for block in blocks if "from pesmith.workflows import train" in block]
    assert len(found) == 1, "README.md should show workflows.train in one python block"
    return found[0]


def test_the_readme_train_example_runs_and_replaces_an_earlier_model(write_config, tmp_path, monkeypatch, capsys):
    example = readme_train_example()
    assert TOUR_CONFIG in example and (ROOT / TOUR_CONFIG).is_file()
    config = write_config(output=str(tmp_path / "model.pt"))
    monkeypatch.setenv("PESMITH_DISABLE_ENTRY_POINTS", "1")
    code = compile(example.replace(TOUR_CONFIG, str(config)), "README.md", "exec")
    exec(code, {})
    first = (tmp_path / "model.pt").stat().st_mtime_ns
    exec(code, {})  # overwrite=True: a second run replaces the first one's model
    assert (tmp_path / "model.pt").stat().st_mtime_ns > first
    out = capsys.readouterr().out.splitlines()
    ran = f"all {TINY_TRAINING['epochs']} epochs run (training.epochs), best epoch"
    assert len(out) == 2 and all(line.startswith(ran) for line in out), out
    with pytest.raises(ConfigError, match="already exists"):
        exec(compile(example.replace(TOUR_CONFIG, str(config)).replace("overwrite=True", "overwrite=False"), "README.md", "exec"), {})
