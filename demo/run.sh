#!/usr/bin/env bash
# Fresh machine -> demo: install what is needed, then synthetic data, training, testing, the table.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" || python -m pip install -q torch
python -m pip install -q -r requirements.txt
python demo/run.py "$@"
