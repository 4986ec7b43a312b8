"""The README's pictures, made by one command from the demo:

    python demo/images.py

Runs the demo (demo/run.py: synthetic DCASE 2022 fan, demo/small.yaml, 4 epochs, seed 42) in a temporary folder,
then loc.py on its dev test clips, and copies into docs/images/ the training curves and the localization figure of
the first anomalous source clip of section 00. Each picture's caption (what produced it, and what training
selected) goes into the PNG (its "Caption" text chunk) and into README.md's image line; tests/test_readme.py checks
that the two agree.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "demo"))

from run import demo_sets  # noqa: E402

from aegan.core.files import atomic_path  # noqa: E402
from aegan.store import checkpoint  # noqa: E402

IMAGES = ("training_curves.png", "localization.png")  # in docs/images/, each shown once in README.md
COMMAND = "python demo/images.py"
EPOCHS = 4


def captions(out: Path, loc_name: str) -> dict[str, str]:
    """What each picture shows and what produced it, with what training selected."""
    state = checkpoint.load(out / "model" / "fan.pth")
    run = (f"the demo's synthetic DCASE 2022 fan data, {EPOCHS} epochs of demo/small.yaml; training selected "
           f"epoch {state['epoch']}, {state['metric']}")
    return {
        "training_curves.png": f"Training curves ({COMMAND}: {run}): the loss terms per epoch and the selected "
                               "metric's hmean",
        "localization.png": f"Localization of an anomalous dev test clip, {loc_name} ({COMMAND}: loc.py on {run}): "
                            "the clip, its reconstruction, the normal average and the map",
    }


def stamp(src: Path, target: Path, caption: str) -> None:
    """`src` copied to `target` with `caption` in its text chunks (its other chunks kept)."""
    with Image.open(src) as im:
        info = PngInfo()
        for k, v in im.text.items():
            info.add_text(k, v)
        info.add_text("Caption", caption)
        with atomic_path(target) as tmp:
            im.save(tmp, format="png", pnginfo=info)


def readme_with(text: str, name: str, caption: str) -> str:
    """README.md's text with the image line of `name` captioned `caption`."""
    line = re.compile(rf"^!\[[^\]]*\]\(docs/images/{re.escape(name)}\)$", re.M)
    if len(line.findall(text)) != 1:
        raise SystemExit(f"README.md must show docs/images/{name} exactly once")
    return line.sub(lambda _: f"![{caption}](docs/images/{name})", text)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(ROOT / "demo" / "run.py"), "--out", tmp, "--epochs", str(EPOCHS)],
                       check=True)
        out = Path(tmp) / "dcase2022"
        subprocess.run([sys.executable, str(ROOT / "dcase2022" / "loc.py"), "--mt", "fan", "-c", "0",
                        *demo_sets(out, EPOCHS)], check=True)
        loc = sorted((out / "loc" / "fan").glob("sec00_source_true1_*.png"))[0]
        text = captions(out, loc.stem)
        for name, src in (("training_curves.png", out / "result" / "fan" / "training_curves.png"),
                          ("localization.png", loc)):
            stamp(src, ROOT / "docs" / "images" / name, text[name])
            print(f"wrote docs/images/{name}: {text[name]}")
        readme = (ROOT / "README.md").read_text()
        for name in IMAGES:
            readme = readme_with(readme, name, text[name])
        (ROOT / "README.md").write_text(readme)
        print("wrote the captions into README.md")


if __name__ == "__main__":
    main()
