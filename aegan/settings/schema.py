"""Every setting, declared once (pydantic): type, default (DCASE 2022's, the paper's), allowed values or range, doc,
and tags. Key names are the original code's, so its config files load unchanged (with ALIASES, the legacy booleans
of train.tf32 and the IGNORED keys)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

FREE = "free"  # a resumed run may change it: where outputs go, how many epochs, how fast, not the numbers
FEATURES = "features"  # the log-mel features depend on it (the feature cache's key)
SEGMENTS = "segments"  # the segments cut from the features depend on it
# The batch size is `train.batch_size` in the original's DCASE 2022 files and `train.bs` in its DCASE 2020 ones:
# each dataset spells it its own way (dcase2020/defaults.yaml renames it) and takes the other as an alias.
ALIASES = {"train.bs": "batch_size", "train.batch_size": "bs"}
# The original's keys that nothing here reads: its label codes, its DCASE 2020 machine lists (the command line's
# --mt decides), its CUDA card (-c decides). feat.spec must be mel.
IGNORED = ("repre", "mt", "card_id")


def number_text(value: Any) -> Any:
    """PyYAML reads 1e-3 (no dot) as a string: a number written so is a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _legacy_tf32(value: Any) -> Any:
    """train.tf32 was a boolean in older config files and checkpoints: true allowed TF32 everywhere, false nowhere."""
    return {True: "tf32", False: "fp32"}.get(value, value) if isinstance(value, bool) else value


Real = Annotated[float, BeforeValidator(number_text), Field(allow_inf_nan=False)]
Weight = Annotated[Real, Field(ge=0)]


def setting(default: Any, doc: str, *tags: str, sane: tuple[float, float] | None = None, **constraints: Any) -> Any:
    """A setting's declaration: its default, its one-line doc, its tags, its constraints (pydantic's) and the range
    outside which an allowed value is unusual enough to warn about at the start of a run (`sane`, inclusive)."""
    extra = {"tags": list(tags), **({"sane": list(sane)} if sane else {})}
    return Field(default, description=doc, json_schema_extra=extra, **constraints)


# Adam's learning rates: the paper's 2e-4, and 50 times either way still trains or at least moves; 2e4 typed for 2e-4
# (losses of 1e15) or 2e-9 (nothing moves) are far out
LEARNING_RATE = (4e-6, 1e-2)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Feat(Section):
    fft_num: int = setting(2048, "FFT length", FEATURES, gt=0)
    mel_bin: int = setting(128, "mel bands (= net.isize)", FEATURES, gt=0)
    frame_hop: int = setting(512, "STFT hop in samples", FEATURES, gt=0)
    channels: int = setting(1, "channels of every clip (the dataset's: DCASE 2026 two, the others one); a clip with "
                            "another count is refused", FEATURES, gt=0)
    channel: Literal["mean", "near", "far", "subtract"] = setting(
        "mean", "how a clip's channels become the input: mean (the original's librosa.load(mono=True)) | near "
        "(channel 0) | far (channel 1) | subtract (near's mel power less feat.far_share x far's, floored: "
        "docs/DCASE2026.md); DCASE 2026's default: the registry's", FEATURES)
    far_share: Weight = setting(1.0, "subtract: the share of the far channel's mel power taken from the near "
                                "channel's", FEATURES)
    frame_num: int = setting(128, "segment length in frames (= mel_bin: square segments)", SEGMENTS, gt=0)
    graph_hop_f: int = setting(1, "segment hop in frames", SEGMENTS, gt=0)
    workers: int = setting(0, "feature-extraction processes; 0 = one per CPU core (up to 8); same numbers", FREE,
                           ge=0)


class Norms(Section):
    d: Literal["ln"] = setting("ln", "critic: ln only (a batch-coupled norm would break the per-sample gradient "
                               "penalty)")
    g: Literal["ln", "bn"] = setting("ln", "generator: ln (LayerNorm over C, H, W) or bn (BatchNorm2d)")


class Net(Section):
    act: list[str] = setting(["leakyrelu", "relu"], "encoder and critic, decoder")
    normalize: Norms = setting(Norms(), "norm layers")
    nz: int = setting(256, "latent size", gt=0)
    ndf: int = setting(32, "encoder and critic width", gt=0)
    ngf: int = setting(32, "decoder width", gt=0)
    isize: int = setting(128, "segment size: a power of two >= 16 (= feat.mel_bin = feat.frame_num)", gt=0)
    first_norm: bool = setting(True, "a norm after the encoder's first conv (the original drops it for DCASE 2022 "
                               "bearing, fan and ToyCar: pretrain/dcase2022/)")


class Wgan(Section):
    feat_match_eff: Weight = setting(0.1, "weight of the feature-matching term")
    match_item: dict[Literal["mu", "sigma"], Weight] = setting(
        {"mu": 1}, "feature-matching weights of the batch mean (mu) and std (sigma) of the critic embedding")
    ncritic: int = setting(1, "critic steps per generator step", gt=0)
    lambda_gp: Weight = setting(10.0, "gradient-penalty weight")


class Train(Section):
    lrD: Real = setting(0.0002, "critic learning rate (Adam)", gt=0, sane=LEARNING_RATE)
    lrG: Real = setting(0.0002, "generator learning rate (Adam)", gt=0, sane=LEARNING_RATE)
    beta1: Real = setting(0.5, "Adam beta1", ge=0, lt=1)
    epoch: int = setting(60, "epochs", FREE, gt=0)
    batch_size: int = setting(512, "segments per batch (the global batch under torchrun)", gt=0)
    select: Literal["best", "metric", "last"] = setting(
        "best", "best (paper: epoch and metric chosen on the labelled dev test) | metric | last")
    eval_overlap: bool = setting(True, "an epoch's critic detector queries run while the next epoch trains (same "
                                 "numbers)", FREE)
    amp: Literal["fp32", "bf16"] = setting("fp32", "training precision: fp32 | bf16 (autocast; faster, approximate: "
                                           "docs/PERFORMANCE.md)")
    channels_last: bool = setting(False, "NHWC tensors in training (for CUDA tensor cores; slower on the CPU)")
    compile: bool = setting(False, "torch.compile the generator for training (the critic's double backward cannot "
                            "be)")
    tf32: Annotated[Literal["original", "fp32", "tf32"], BeforeValidator(_legacy_tf32)] = setting(
        "original", "CUDA precision: original (PyTorch's default, as the original: TF32 convolutions, fp32 matmuls) "
        "| fp32 (exact) | tf32 (both TF32); true/false = tf32/fp32")
    depthwise_sum: bool = setting(False, "training: the critic's depthwise layer as product+sum (CUDA speed; ~1 ulp "
                                  "off)")
    tensorboard: bool = setting(True, "TensorBoard events of the run: loss terms, evaluation, settings (tb_dir)", FREE)
    wgan: Wgan = setting(Wgan(), "the WGAN-GP losses")


class Detect(Section):
    p: Real = setting(0.1, "max FPR of the pAUC", gt=0, le=1)
    metric: str | None = setting(None, "the metric whose scores are written; the paper's per machine type in "
                                 "pretrain/")
    decision_percentile: Real = setting(0.9, "decision threshold: this percentile of a gamma fit to the training "
                                        "scores", gt=0, lt=1)
    amp: Literal["fp32", "bf16"] = setting("fp32", "scoring precision: fp32 | bf16 (autocast; faster, approximate)")


class Settings(Section):
    dataset_dir: str = setting("../data/dcase2022", "the dataset: dev_data/ and eval_data/", FREE)
    model_dir: str = setting("../model/dcase2022", "models and run states", FREE)
    spec_dir: str = setting("../spec/dcase2022", "feature cache", FREE)
    log_dir: str = setting("../log/dcase2022", "training logs and each command's settings", FREE)
    detect_dir: str = setting("../detect/dcase2022", "anomaly score and decision files (the challenge's format)",
                              FREE)
    result_dir: str = setting("../result/dcase2022", "result tables and pictures", FREE)
    loc_dir: str = setting("../ano_loc/dcase2022", "localization figures (loc.py)", FREE)
    tb_dir: str | None = setting(None, "TensorBoard events: <tb_dir>/<mt>/seed<k>-<run id>; null: <log_dir>/<mt>/tb/"
                                 "seed<k>-<run id>", FREE)
    feat: Feat = setting(Feat(), "log-mel features and segments")
    net: Net = setting(Net(), "the networks")
    train_set: Literal["dev", "eval", "deval", "auto"] = setting(
        "dev", "dev | eval | deval (both) | auto (the part that holds the machine type)")
    paper_result: Real | None = setting(None, "the paper's result (%) for this machine type, shown next to ours; "
                                        "set in pretrain/", FREE)
    train: Train = setting(Train(), "training")
    detect: Detect = setting(Detect(), "scoring and decisions")
    year: int | None = setting(None, "the first-shot years 2023-2026: which (the default paths name it as {year})")


PATH_KEYS = tuple(key for key in Settings.model_fields if key.endswith("_dir"))  # the settings that are folders
