#!/usr/bin/env bash
# Fresh machine -> demo: the pinned environment (requirements.txt) into the active Python, then synthetic data,
# training, testing, the table. Use a virtual environment (README): this installs into whatever `python` is.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python demo/run.py "$@"
