"""``python -m pesmith ...``, e.g. under MPI: ``mpiexec -n 4 python -m mpi4py.futures -m pesmith label config.yaml``.

mpi4py.futures imports the main module on its worker ranks under another name, so the guard
below keeps them serving tasks instead of running the command.
"""

import sys

from pesmith.cli import main

if __name__ == "__main__":
    sys.exit(main())
