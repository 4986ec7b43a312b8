#!/usr/bin/env bash
# The prepared GPU measurement (bench/gpu.py): run from the repository root on a machine with torch + CUDA.
# librosa and soundfile are installed from bench/wheels/ (filled beforehand by bench/fetch_wheels.sh) when missing.
# Writes bench/results/gpu_<card>.json and prints the table; finishes in under 8 minutes on an H200.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python bench/gpu.py "$@"
