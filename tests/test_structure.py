"""The layers of aegan/ as the folders show them: each module imports only from layers below its own (or its own
folder), no import cycle, no import inside a function but the few listed here to defer a heavy package; no module
over 300 lines, no function over 50."""

from __future__ import annotations

import ast
import re

from aegan.core.metrics import metric_names
from conftest import ROOT

PACKAGE = ROOT / "aegan"
# The layers, lowest first; a module may import from its own folder and from any folder of a lower layer. The
# top-level modules are the commands users run with `python -m` (and the registry of datasets).
LAYERS = [("core", ""), ("settings",), ("method",), ("data",), ("scoring",), ("store", "registry"), ("inference",),
          ("training",), ("commands", "synth", "score", "detector"), ("jobs", "reproduce")]
# Imports inside a function, each deferring a package that costs seconds to import to where it is needed.
DEFERRED = {
    ("aegan.commands.cli", "aegan.commands.localization"): "matplotlib: only loc.py draws",
    ("aegan.commands.cli", "aegan.commands.curves"): "matplotlib: only once training is over",
    ("aegan.commands.testset", "aegan.commands.plots"): "matplotlib: only when test.py draws its pictures",
    ("aegan.commands.plots", "sklearn.manifold"): "t-SNE: seconds, only for --embedding-map tsne",
    ("aegan.scoring.evaluation", "sklearn.metrics"): "1.2 s: the registry, which every command imports, holds the "
                                                     "rules, not their arithmetic",
    ("aegan.scoring.evaluation", "scipy.stats"): "the same",
    ("aegan.scoring.clip_scores", "sklearn"): "0.8 s: every command imports the scoring pass; only scoring fits the "
                                              "critic detectors (any of sklearn's estimators: a new metric's too)",
    ("aegan.reproduce", "aegan.commands.curves"): "matplotlib: only for the table's figure",
    ("aegan.jobs.local", "torch"): "seconds: aegan.reproduce --status and the Slurm launcher never need it",
    ("aegan.jobs.slurm", "submitit"): "the cluster's package: only where jobs are submitted or run",
}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(f.read_text())
    return out


def _layer(module: str) -> int:
    part = module.split(".")[1] if module.count(".") else ""
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(modules imported at module level, modules imported inside a function)."""
    top, inner = set(), set()
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        (inner if id(node) in nested else top).update(names)
    return top, inner


def test_every_import_goes_down_the_layers_and_none_hides_in_a_function():
    modules = _modules()
    graph = {}
    for name, tree in modules.items():
        top, inner = _imports(tree)
        # a package (its empty __init__) is not a layer of its own: `from aegan.store import checkpoint` names both
        graph[name] = {m for m in top if m in modules and m != name and not (ROOT / m.replace(".", "/")).is_dir()}
        for target in graph[name]:
            same_folder = target.rsplit(".", 1)[0] == name.rsplit(".", 1)[0]
            top_level = name.count(".") == 1  # a command of its layer (aegan.reproduce) uses that layer's folder
            assert same_folder or _layer(target) < _layer(name) or top_level and _layer(target) == _layer(name), \
                f"{name} imports {target}, a layer above or beside"
        for target in inner:  # `from aegan.commands import plots` names the package and the module: either is listed
            assert any(target == t or target.startswith(t + ".") or t.startswith(target + ".")
                       for (m, t) in DEFERRED if m == name), \
                f"{name} imports {target} inside a function: import it at the top, or defer a heavy package here"
    done, path = set(), []

    def visit(m: str) -> None:  # depth-first: a module met again on the current path closes a cycle
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m in done:
            return
        path.append(m)
        for t in graph[m]:
            visit(t)
        path.pop()
        done.add(m)

    for m in graph:
        visit(m)


def test_modules_and_functions_fit_on_a_screen_or_two():
    for f in sorted(PACKAGE.rglob("*.py")):
        text = f.read_text()
        assert len(text.splitlines()) <= 300, f"{f.relative_to(ROOT)} has {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 50, f"{f.relative_to(ROOT)}: {node.name} has {length} lines"


NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen twenty").split()


def test_the_architecture_page_counts_and_lists_what_the_code_declares():
    """docs/ARCHITECTURE.md: its count of deferred imports, its layer table (one row per layer, in order, naming
    that layer's folders and top-level modules) and any count of metrics are the code's."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    (count,) = re.findall(r"\((\w+) such imports", text)
    assert NUMBER_WORDS.index(count) == len(DEFERRED), f"the page says {count} deferred imports, there are " \
                                                       f"{len(DEFERRED)}"
    rows = re.findall(r"^\| (\d+) \| (.+?) \| ", text, re.M)
    assert [int(i) for i, _ in rows] == list(range(len(LAYERS)))
    for (_, cell), names in zip(rows, LAYERS):
        assert set(re.findall(r"`(\w+)(?:/|\.py)`", cell)) == {n for n in names if n}, cell
    assert all(int(n) == len(metric_names()) for n in re.findall(r"\b(\d+) (?:anomaly )?(?:scores|metrics)\b", text))
