#!/usr/bin/env bash
# Install GPAW and its PAW setups into a Python environment (Debian/Ubuntu, run as root or with sudo).
#
#   bash scripts/install_gpaw.sh [PYTHON]        # default PYTHON: python3 on PATH (e.g. .venv/bin/python)
#   GPAW_MPI=1 bash scripts/install_gpaw.sh ...  # build with MPI (Debian's MPICH) for `reference: {kind: gpaw, ranks: N}`
#
# GPAW compiles a C extension against libxc, BLAS (OpenBLAS) and FFTW: the script installs the Debian
# development packages, writes a siteconfig.py for them, then runs `pip install ".[gpaw]"` equivalents
# (gpaw + gpaw-data, the PAW datasets from PyPI). PATH puts Debian's mpicc first for the MPI build.. Check with: PYTHON -c "import gpaw; print(gpaw.__version__)".
set -euo pipefail
PYTHON=${1:-python3}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
packages="build-essential libxc-dev libopenblas-dev libfftw3-dev"
if [ "${GPAW_MPI:-0}" = 1 ]; then packages="$packages mpich libmpich-dev"; fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages
config_dir=$(mktemp -d)
cat > "$config_dir/siteconfig.py" <<PY
# written by pesmith scripts/install_gpaw.sh
libraries = ['xc', 'openblas', 'fftw3']
fftw = True
scalapack = False
mpi = ${GPAW_MPI:-0} == 1
compiler = 'mpic++' if mpi else 'g++'  # GPAW >= 25 compiles its C sources as C++17
PY
"$PYTHON" -m pip install "gpaw-data>=1.0" "ase>=3.29" numpy scipy
# --force-reinstall: rebuild when switching between the serial and the MPI build
GPAW_CONFIG="$config_dir/siteconfig.py" PATH="/usr/bin:$PATH" \
    "$PYTHON" -m pip install --no-cache-dir --force-reinstall --no-deps "gpaw>=24.1"
"$PYTHON" -c "import gpaw; print('GPAW', gpaw.__version__, 'installed')"
