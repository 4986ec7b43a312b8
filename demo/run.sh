#!/usr/bin/env bash
# Fresh machine -> demo: the pinned environment (requirements.txt) into the active Python, then synthetic data,
# training, testing, the table. Use a virtual environment (README): this installs into whatever `python` is.
set -euo pipefail
cd "$(dirname "$0")/.."
# torch first, at the pinned release: a torch already installed (a CUDA build, say) is kept; else the CPU build,
# which is all the demo needs (PyPI's default build on Linux is the CUDA one, several GB), from PyPI if the
# PyTorch index cannot be reached
torch_pin=$(sed -n 's/^torch==//p' requirements.txt)
python -c "import torch" 2>/dev/null || python -m pip install -q --retries 1 "torch==$torch_pin" \
    --index-url https://download.pytorch.org/whl/cpu || python -m pip install -q "torch==$torch_pin"
python -m pip install -q -r requirements.txt
python demo/run.py "$@"
