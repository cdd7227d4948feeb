"""``python -m pesmith ...``, e.g. under MPI: ``mpiexec -n 4 python -m mpi4py.futures -m pesmith label config.yaml``."""

import sys

from .cli import main

sys.exit(main())
