"""Test AEGAN-AD on one DCASE 2023-2026 machine type (see README): python test.py --mt fan --set year=2024 -c 0 -d"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from firstshot/ or the repo root

from aegan.commands.cli import test_main  # noqa: E402
from firstshot.datasets import SPEC  # noqa: E402

if __name__ == "__main__":
    test_main(SPEC)
