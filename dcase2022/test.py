"""Test AEGAN-AD on one DCASE 2022 machine type (see README): python test.py --mt fan -c 0 -d"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from dcase2022/ or the repo root

from aegan.commands.cli import test_main  # noqa: E402
from dcase2022.datasets import SPEC  # noqa: E402

if __name__ == "__main__":
    test_main(SPEC)
