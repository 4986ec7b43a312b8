"""The Python API for scoring new recordings (`from aegan.detector import Detector`): aegan/inference/detector.py."""

from aegan.inference.detector import Detector, Result, expand

__all__ = ["Detector", "Result", "expand"]
