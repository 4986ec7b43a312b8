#!/usr/bin/env bash
# Fill bench/wheels/ (ignored by git) with librosa, soundfile, what else ours and the original import (scikit-learn,
# scipy, pyyaml, tqdm, matplotlib) and their dependencies for the GPU machine, which
# reaches no package index. Run here, where PyPI is reachable; the wheels are for the GPU machine's Python and
# platform (default CPython 3.11 on x86-64 Linux: override with PYVER=3.12 PLATFORM=manylinux2014_x86_64).
# torch and numpy are not fetched: the GPU machine has them.
set -euo pipefail
cd "$(dirname "$0")"
PYVER="${PYVER:-3.11}"
PLATFORM="${PLATFORM:-manylinux2014_x86_64}"
mkdir -p wheels
python -m pip download --dest wheels --only-binary=:all: --python-version "$PYVER" --platform "$PLATFORM" \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    librosa soundfile scikit-learn scipy pyyaml tqdm matplotlib
echo "wheels for Python $PYVER in $(pwd)/wheels: copy the repository (with this folder) to the GPU machine"
