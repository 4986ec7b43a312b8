"""Synthetic machine sound in the official DCASE 2020, 2022 and 2023-2026 layouts and file names (2026: a near and
a far microphone in every clip), for demos and tests.

Every clip is drawn from one seeded generator: same seed, same bytes (tests rely on the clips)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from aegan import registry
from aegan.commands.parser import Parser
from aegan.core.files import atomic_path, write_text
from aegan.core.text import plural

ANOMALY_KINDS = ("click", "tone", "burst", "shift")
# Attribute parts of DCASE 2022 file names, per machine type and section (the eval sections 03-05 reuse
# 00-02), with values the dataset really uses: the original code decodes them and stops on unknown ones.
ATTRIBUTES_2022 = {
    "fan": (("m-n_W", "m-n_X"), ("f-n_A", "f-n_B"), ("n-lv_L1", "n-lv_L2")),
    "gearbox": (("volt_1.0", "volt_1.5"), ("wt_30", "wt_50"), ("id_00", "id_01")),
    "bearing": (("vel_6", "vel_8"), ("vel_6_loc_A", "vel_8_loc_B"), ("vel_6_f-n_A", "vel_8_f-n_B")),
    "slider": (("vel_300", "vel_500"), ("ac_0.03", "ac_0.05"), ("f-n_A", "f-n_B")),
    "ToyCar": (("car_A1_spd_28V_mic_1_noise_1", "car_A2_spd_31V_mic_2_noise_1"),) * 3,
    "ToyTrain": (("car_A1_spd_6_mic_1_noise_1", "car_A2_spd_7_mic_2_noise_1"),) * 3,
    "valve": (("pat_00", "pat_01"), ("pat_00_panel_open", "pat_01_panel_b-c"), ("v1pat_00_v2pat_01", "v1pat_02")),
}


def attributes_2022(machine: str, section: str, i: int) -> str:
    """The attribute part of clip i's name; machine types without a table get a generic `a_<k>`."""
    if machine not in ATTRIBUTES_2022:
        return f"a_{i % 3}"
    choices = ATTRIBUTES_2022[machine][int(section) % 3]
    return choices[i % len(choices)]


def _base_f0(machine: str, group: str) -> float:
    h = zlib.crc32(f"{machine}/{group}".encode()) % 1000
    return 60.0 + 0.25 * h  # 60..310 Hz, stable across runs and machines


def normal_sound(rng: np.random.Generator, sr: int, seconds: float, f0: float, noise: float) -> np.ndarray:
    """A harmonic hum on `f0` (jittered per clip), slowly amplitude-modulated, in broadband noise."""
    n = int(round(sr * seconds))
    t = np.arange(n) / sr
    f0 = f0 * (1 + rng.normal(0, 0.005))
    y = np.zeros(n)
    for k in range(1, 9):
        if k * f0 >= sr / 2 - 100:
            break
        y += (1.0 / k) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    am = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 2 * np.pi))
    return 0.1 * y * am + noise * rng.normal(0, 1, n)


def add_anomaly(rng: np.random.Generator, y: np.ndarray, sr: int, kind: str, f0: float) -> np.ndarray:
    """`y` with one kind of anomaly: a click train, an extra high tone, band-limited noise bursts or a shifted f0."""
    n = len(y)
    t = np.arange(n) / sr
    y = y.copy()
    if kind == "click":
        period = int(sr / rng.uniform(6, 12))
        for start in range(int(rng.uniform(0, period)), n - 64, period):
            y[start:start + 64] += 0.6 * rng.choice([-1, 1]) * np.exp(-np.arange(64) / 8)
    elif kind == "tone":
        f = rng.uniform(0.15, 0.35) * sr
        y += 0.08 * np.sin(2 * np.pi * f * t)
    elif kind == "burst":
        for _ in range(int(rng.integers(3, 7))):
            start, length = int(rng.uniform(0, n - sr // 8)), int(sr * rng.uniform(0.05, 0.15))
            seg = rng.normal(0, 1, length)
            seg = np.convolve(seg, np.ones(4) / 4, mode="same")  # soften to a band
            y[start:start + length] += 0.25 * seg[: n - start]
    elif kind == "shift":
        y += 0.15 * np.sin(2 * np.pi * f0 * 1.37 * t) + 0.08 * np.sin(2 * np.pi * f0 * 2.74 * t)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}: one of {', '.join(ANOMALY_KINDS)}")
    return y


def _write(path: Path, y: np.ndarray, sr: int) -> None:
    """PCM-16 WAV of (samples,) or (samples, channels), scaled as one below full scale (the channels' levels kept)."""
    y = np.clip(y / max(1.0, np.abs(y).max() / 0.9), -1, 1)
    with atomic_path(path) as tmp:
        sf.write(tmp, y, sr, subtype="PCM_16", format="WAV")


# Two microphones (DCASE 2026): the far one hears the machine FAR_GAIN as loud, FAR_DELAY s later, and the room's
# noise ENV_NEAR times as loud as the near one hears it; the noise's colour and level differ by domain.
FAR_GAIN, FAR_DELAY, ENV_NEAR = 0.35, 0.002, 0.25
ENVIRONMENT = {"source": (0.97, 0.06, 0.0), "target": (0.6, 0.09, 0.5)}  # domain: (low-pass pole, level, AM depth)


def environment(rng: np.random.Generator, n: int, sr: int, domain: str) -> np.ndarray:
    """The room's noise in one domain: white noise through a one-pole low-pass, its level slowly modulated."""
    pole, level, depth = ENVIRONMENT[domain]
    y = lfilter([1 - pole], [1, -pole], rng.normal(0, 1, n))
    y *= level / max(np.std(y), 1e-12)
    t = np.arange(n) / sr
    return y * (1 + depth * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))


def microphones(rng: np.random.Generator, machine: np.ndarray, sr: int, domain: str, channels: int) -> np.ndarray:
    """(samples, channels): channel 0 the machine with a little of the room, the others farther (FAR_GAIN /
    FAR_DELAY per step) in the room's full noise; each microphone with its own small self-noise."""
    n = len(machine)
    env = environment(rng, n, sr, domain)
    delay = int(round(FAR_DELAY * sr))
    out = [machine + ENV_NEAR * env]
    for c in range(1, channels):
        late = np.concatenate([np.zeros(c * delay), machine[: n - c * delay]])
        out.append(FAR_GAIN ** c * late + env)
    return np.stack([ch + 0.002 * rng.normal(0, 1, n) for ch in out], axis=1)


@dataclass(kw_only=True)
class _Synth:
    """One dataset being written: what its clips share, and the one seeded generator they are all drawn from; the
    clip counts are per section, domain and label, or ID and label."""

    out: Path
    machine: str
    seconds: float = 3.0
    sr: int = 16000
    n_train: int = 16
    n_train_target: int = 2
    n_test: int = 5
    seed: int = 0
    channels: int = 1

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def clip(self, path: Path, group: str, domain: str = "source", anomalous: bool = False) -> None:
        f0 = _base_f0(self.machine, group) * (1.12 if domain == "target" else 1.0)
        y = normal_sound(self.rng, self.sr, self.seconds, f0, 0.01 if domain == "source" else 0.02)
        if anomalous:  # in the machine only: every microphone hears it as it hears the machine
            y = add_anomaly(self.rng, y, self.sr, ANOMALY_KINDS[int(self.rng.integers(len(ANOMALY_KINDS)))], f0)
        _write(path, y if self.channels == 1 else microphones(self.rng, y, self.sr, domain, self.channels), self.sr)

    def section(self, part: str, sec: str, first: int = 0) -> None:
        """One section in the DCASE 2022-2026 names; eval test clips shuffled, renamed from `first`, truth beside."""
        base = self.out / f"{part}_data" / self.machine
        for i, domain in enumerate(["source"] * self.n_train + ["target"] * self.n_train_target):
            attrs = attributes_2022(self.machine, sec, i)
            self.clip(base / "train" / f"section_{sec}_{domain}_train_normal_{i:04d}_{attrs}.wav", sec, domain)
        test = [(d, lab) for d in ("source", "target") for lab in ("normal", "anomaly") for _ in range(self.n_test)]
        if part == "eval":
            self.rng.shuffle(test)
        truth: dict[str, list[str]] = {"data": [], "domain": [], "attributes": []}
        for j, (domain, label) in enumerate(test):
            labelled = f"section_{sec}_{domain}_test_{label}_{j:04d}_{attributes_2022(self.machine, sec, j)}"
            name = f"{labelled}.wav" if part == "dev" else f"section_{sec}_{first + j:04d}.wav"
            self.clip(base / "test" / name, sec, domain, label == "anomaly")
            truth["data"].append(f"{name},{int(label == 'anomaly')}")
            truth["domain"].append(f"{name},{int(domain == 'target')}")
            truth["attributes"].append(f"{name},{labelled}")
        if part == "eval":
            for kind, rows in truth.items():
                write_text(self.out / f"ground_truth_{kind}" / f"ground_truth_{self.machine}_section_{sec}_test.csv",
                           "\n".join(rows) + "\n")


def make_2022(out: Path, machine: str, seconds: float = 3.0, sr: int = 16000, n_train: int = 16,
              n_train_target: int = 2, n_test: int = 5, dev_sections: tuple[str, ...] = ("00", "01", "02"),
              eval_sections: tuple[str, ...] = ("03", "04", "05"), seed: int = 0) -> Path:
    """DCASE 2022 layout: the dev test set labelled; the eval one with unlabelled names, its truth beside it."""
    synth = _Synth(out=out, machine=machine, seconds=seconds, sr=sr, n_train=n_train, n_train_target=n_train_target,
                   n_test=n_test, seed=seed)
    for part, sections in (("dev", dev_sections), ("eval", eval_sections)):
        for sec in sections:
            synth.section(part, sec)
    return out


def make_firstshot(out: Path, machine: str, year: int, part: str = "dev", seconds: float = 3.0, sr: int = 16000,
                   n_train: int = 16, n_train_target: int = 2, n_test: int = 5, seed: int = 0) -> Path:
    """A first-shot year's layout: one section (00) in dev_data/ or eval_data/, in the year's channels (its
    registry entry)."""
    entry = registry.first_shot_year(year)
    channels = entry.channels
    synth = _Synth(out=out, machine=machine, seconds=seconds, sr=sr, n_train=n_train, n_train_target=n_train_target,
                   n_test=n_test, seed=seed, channels=channels)
    synth.section(part, "00", entry.first_eval_number)
    return out


def make_2020(out: Path, machine: str, seconds: float = 3.0, sr: int = 16000, n_train: int = 18, n_test: int = 8,
              dev_ids: tuple[str, ...] = ("00", "02", "04"), eval_ids: tuple[str, ...] = ("01", "03", "05"),
              seed: int = 0) -> Path:
    """DCASE 2020 layout: normal_id_II_NNNNNNNN.wav; eval test id_II_NNNNNNNN.wav (truth in ground_truth_data/)."""
    synth = _Synth(out=out, machine=machine, seconds=seconds, sr=sr, n_train=n_train, n_test=n_test, seed=seed)
    for part, ids in (("dev", dev_ids), ("eval", eval_ids)):
        base = out / f"{part}_data" / machine
        for mid in ids:
            for i in range(synth.n_train):
                synth.clip(base / "train" / f"normal_id_{mid}_{i:08d}.wav", mid)
            test = [lab for lab in ("normal", "anomaly") for _ in range(synth.n_test)]
            if part == "eval":
                synth.rng.shuffle(test)
            truth = []
            for j, label in enumerate(test):
                name = f"id_{mid}_{j:08d}.wav"
                anomalous = label == "anomaly"
                synth.clip(base / "test" / (f"{label}_{name}" if part == "dev" else name), mid, anomalous=anomalous)
                truth.append(f"{name},{int(anomalous)}")
            if part == "eval":
                write_text(out / "ground_truth_data" / f"ground_truth_{machine}_id_{mid}_test.csv",
                           "\n".join(truth) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    p = Parser(prog="python -m aegan.synth", description=__doc__.split("\n\n")[0])
    years = [int(name.removeprefix("dcase")) for name in registry.REGISTRY]
    p.add_argument("--year", type=int, choices=years, required=True)
    p.add_argument("--machine", required=True, help="machine type name used in the folder and hash")
    p.add_argument("--out", required=True, help="dataset_dir to write (dev_data/ and eval_data/ go inside)")
    p.add_argument("--part", choices=("dev", "eval"), default="dev",
                   help="2023-2026: a development machine type (dev_data/) or an evaluation one (eval_data/)")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--sr", type=int, default=16000)
    p.add_argument("--train", type=int, default=None, help="normal training clips per section/ID (source)")
    p.add_argument("--test", type=int, default=None, help="test clips per section/domain/label (2022) or ID/label")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.seconds <= 0 or a.sr < 1000:
        p.error("--seconds must be positive and --sr at least 1000")
    kw = {"seconds": a.seconds, "sr": a.sr, "seed": a.seed}
    kw |= {k: v for k, v in (("n_train", a.train), ("n_test", a.test)) if v is not None}
    layout = registry.dataset(f"dcase{a.year}").layout
    if layout == "firstshot":
        out = make_firstshot(Path(a.out), a.machine, a.year, a.part, **kw)
    else:
        out = {"2022": make_2022, "2020": make_2020}[layout](Path(a.out), a.machine, **kw)
    n = sum(1 for _ in out.glob(f"*_data/{a.machine}/*/*.wav"))
    print(f"synth: wrote {plural(n, 'clip')} of {a.machine} (DCASE {a.year} layout) under {out}")


if __name__ == "__main__":
    main()
