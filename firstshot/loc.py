"""Anomaly localization maps of one DCASE 2023-2026 machine type (README): python loc.py --mt fan --set year=2024"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from firstshot/ or the repo root

from aegan.commands.cli import loc_main  # noqa: E402
from firstshot.datasets import SPEC  # noqa: E402

if __name__ == "__main__":
    loc_main(SPEC)
