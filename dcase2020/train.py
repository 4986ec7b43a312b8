"""Train AEGAN-AD on one DCASE 2020 machine type (see README): python train.py --mt fan -c 0 --seed 42"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from dcase2020/ or the repo root

from aegan.commands.cli import train_main  # noqa: E402
from dcase2020.datasets import SPEC  # noqa: E402

if __name__ == "__main__":
    train_main(SPEC)
