"""Runs the original code's train.py or test.py (a CPU copy, see oracle.py) and records what it computes.

    python oracle_driver.py train|test <mt> <seed> <out.pt>     (cwd: the copy of dcase22/ or dcase20/)
    python oracle_driver.py features <groups.json> <dir> <out.npz>   (cwd: the original's dcase20/)

The script's own code runs unchanged: its definitions are executed, a few of its functions are wrapped
so that their results are recorded on the way through, and then its `__main__` block runs with the
command line a user would type. Recorded:
- train: per epoch the losses train_one_epoch returns, the weights after it, and what test() returns;
- test: every call to roc_auc_score, from which each clip's 19 scores are read back;
- features: per group of clips (one clip length each) its generate_spec's raw log-mel (what its cache file
  holds) and the clips scaled by the group's own max and min, as its training set is.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np
import torch

MAIN = "\nif __name__ == '__main__':\n"


def _load(script: str) -> tuple[dict, str]:
    """(namespace with the script's definitions, source of its __main__ block)."""
    src = open(script).read()
    head, sep, main = src.partition(MAIN)
    if not sep:
        raise SystemExit(f"oracle: {script} has no __main__ block where expected")
    ns: dict = {"__name__": "oracle", "__file__": script}
    exec(compile(head, script, "exec"), ns)
    return ns, textwrap.dedent(main)


def _run_main(ns: dict, script: str, main: str, argv: list[str]) -> None:
    sys.argv = [script, *argv]
    exec(compile(main, script, "exec"), ns)


def train(mt: str, seed: str, out: str) -> None:
    ns, main = _load("train.py")
    record: dict = {"losses": [], "weights": [], "test": []}
    one_epoch, test = ns["train_one_epoch"], ns["test"]

    def recorded_one_epoch(*args, **kwargs):
        netD, netG, aver = one_epoch(*args, **kwargs)
        record["losses"].append({k: float(v) for k, v in aver.items()})
        record["weights"].append({"netD": {k: v.detach().clone() for k, v in netD.state_dict().items()},
                                  "netG": {k: v.detach().clone() for k, v in netG.state_dict().items()}})
        return netD, netG, aver

    def recorded_test(*args, **kwargs):
        result = test(*args, **kwargs)
        record["test"].append([[float(v) for v in result[0]], result[1]])
        return result

    ns["train_one_epoch"], ns["test"] = recorded_one_epoch, recorded_test
    _run_main(ns, "train.py", main, ["--mt", mt, "--seed", seed])
    torch.save(record, out)


def test(mt: str, out: str) -> None:
    ns, main = _load("test.py")
    calls: list = []
    real = ns["metrics"]

    class Recording:  # stands in for sklearn.metrics inside test.py; computes with the real function
        @staticmethod
        def roc_auc_score(y_true, y_score, max_fpr=None):
            # critic scores come as 1-element arrays, generator scores as floats
            calls.append(([int(v) for v in y_true], [float(np.ravel(v)[0]) for v in y_score], max_fpr))
            return real.roc_auc_score(y_true, y_score, max_fpr=max_fpr)

    ns["metrics"] = Recording
    results: list = []
    inner = ns["test"]

    def recorded_test(*args, **kwargs):
        r = inner(*args, **kwargs)
        results.append(r)
        return r

    ns["test"] = recorded_test
    _run_main(ns, "test.py", main, ["--mt", mt])
    torch.save({"calls": calls, "returned": [_plain(r) for r in results]}, out)


def features(groups_file: str, top: str, out: str) -> None:
    import utils  # the original's dcase20/utils.py, unchanged

    record = {}
    for name, clips in json.loads(open(groups_file).read()).items():
        scaled = utils.generate_spec({"dev": clips}, "mel", 2048, 128, 512, top, name, "train", "dev")
        record[f"{name}_raw"] = np.load(os.path.join(top, "dev", name, "train_raw_mel_128_2048_512_1.npy"))
        record[f"{name}_scaled"] = scaled
    np.savez(out, **record)


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # the original's modules (utils, net, datasets, ...) sit in the copy
    mode = sys.argv[1]
    if mode == "train":
        train(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "test":
        test(sys.argv[2], sys.argv[4])
    elif mode == "features":
        features(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"oracle: unknown mode {mode}")
