"""Config files: YAML read strictly, as YAML 1.2 reads it (PyYAML's SafeLoader with the 1.2 core schema's
resolvers: 010 is ten, 1:04 and yes are text, 1e-3 is a number), every key once (a duplicate names both lines),
bounded in size and in alias expansion, every refusal one line naming the file; and settings written back as YAML."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from aegan.core.errors import AeganError, shown
from aegan.core.files import dangling_link
from aegan.core.kinds import TORCH, sniff

# A config file is a few dozen settings; YAML aliases can make a small file expand to billions of nodes (the
# "billion laughs"), which would exhaust memory wherever the value is copied or shown. Refuse beyond this.
MAX_YAML_NODES = 100_000
# ... and a file of megabytes is not one either: PyYAML holds ~1 kB per node, so a 50 MB file would take gigabytes
# before it could be refused. Refused before it is parsed.
MAX_YAML_BYTES = 1 << 20

# The YAML 1.2 core schema (yaml.org/spec/1.2.2/#1032-tag-resolution): PyYAML resolves YAML 1.1, where a leading 0
# is octal (010 = 8), digits with colons are base 60 (1:04 = 64), yes/no/on/off are booleans, 1_000 an int, and
# 1e-3 (no dot) a string. These are the only implicit types; everything else is text.
CORE = {
    "tag:yaml.org,2002:null": r"~|null|Null|NULL|",
    "tag:yaml.org,2002:bool": r"true|True|TRUE|false|False|FALSE",
    "tag:yaml.org,2002:int": r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
    "tag:yaml.org,2002:float": r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)"
                               r"|\.(nan|NaN|NAN)",
}


class Duplicate(yaml.YAMLError):
    """A key given twice in one mapping: YAML 1.2 forbids it; PyYAML would keep the last one in silence."""

    def __init__(self, key: Any, first: int, second: int):
        super().__init__(f"{key!r} is given twice (lines {first} and {second})")
        self.key, self.first, self.second = key, first, second


def _int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if not re.fullmatch(CORE["tag:yaml.org,2002:int"], text):
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a YAML 1.2 integer", node.start_mark)
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    return int(text[2:] if base != 10 else text, base)


def _float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node)
    if not re.fullmatch(CORE["tag:yaml.org,2002:float"], text):
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a YAML 1.2 number", node.start_mark)
    special = text.lower().lstrip("+-")
    if special in (".inf", ".nan"):
        return math.copysign(math.inf, -1 if text.startswith("-") else 1) if special == ".inf" else math.nan
    return float(text)


class StrictLoader(yaml.SafeLoader):
    """YAML 1.2 core schema, every key of a mapping once."""

    yaml_implicit_resolvers: dict = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise Duplicate(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: PyYAML's own line says so
                continue
        return super().construct_mapping(node, deep)


class StrictDumper(yaml.SafeDumper):
    """Writes what StrictLoader reads back the same: text that YAML 1.2 would read as a number is quoted."""

    yaml_implicit_resolvers: dict = {}


for _tag, _pattern in CORE.items():
    for _cls in (StrictLoader, StrictDumper):
        _cls.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), None)
StrictLoader.add_constructor("tag:yaml.org,2002:int", _int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", _float)


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes the document has once its aliases are expanded (each alias counted in full, once per use),
    computed on the composed graph, where an alias is a shared node: cheap whatever the expanded size."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once
    if isinstance(node, yaml.SequenceNode):
        memo[id(node)] = 1 + sum(_expanded_nodes(x, memo) for x in node.value)
    elif isinstance(node, yaml.MappingNode):
        memo[id(node)] = 1 + sum(_expanded_nodes(k, memo) + _expanded_nodes(v, memo) for k, v in node.value)
    return memo[id(node)]


def load_text(text: str, what: str, lenient: bool = False) -> Any:
    """One YAML document read by StrictLoader; a refusal is one line that starts with `what` (the file, the --set).
    `lenient`: text that is not valid YAML is that text (a --set value such as `[`), still bounded and strict."""
    loader = None
    try:
        loader = StrictLoader(text)  # it checks the text is printable here
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, {}) > MAX_YAML_NODES:
            raise AeganError(f"{what} expands to more than {MAX_YAML_NODES} values through YAML aliases "
                             "(&name / *name): write the settings out plainly")
        return None if node is None else loader.construct_document(node)
    except Duplicate as e:
        raise AeganError(f"{what}: key {shown(e.key)} is given twice (lines {e.first} and {e.second}); YAML allows "
                         "a key once per mapping: keep one") from None
    except yaml.YAMLError as e:
        if lenient:
            return text
        raise AeganError(f"{what} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise AeganError(f"{what} nests too deeply to be a config file") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path) -> dict:
    kind = sniff(path)
    if kind not in (None, "a settings file (YAML)", "a JSON file"):  # JSON is YAML too
        kind = "a PyTorch file (a model or a run state)" if kind == TORCH else kind
        raise AeganError(f"config file {shown(path)} is {kind}, not a YAML file of settings: give a config file "
                         "(e.g. pretrain/<dataset>/<mt>.yaml)")
    try:
        with open(path, "rb") as f:  # a bounded read: a huge file (or /dev/zero) is refused before it is parsed
            raw = f.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise AeganError(f"config file {shown(path)} is over {MAX_YAML_BYTES >> 20} MiB, far more than a file of "
                             "settings holds: give a config file (e.g. pretrain/<dataset>/<mt>.yaml)")
        data = load_text(raw.decode("utf-8"), f"config file {shown(Path(path))}")
    except FileNotFoundError:
        if link := dangling_link(path):
            raise AeganError(f"config file {link}: restore the file or remove the link") from None
        raise AeganError(f"config file not found: {shown(path)}") from None
    except IsADirectoryError:
        raise AeganError(f"config file {shown(path)} is a folder, not a YAML file") from None
    except UnicodeDecodeError as e:
        raise AeganError(f"config file {shown(path)} is not UTF-8 text (byte {e.start}): give a YAML file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AeganError(f"config file {shown(path)} must hold a mapping of settings, not {type(data).__name__}")
    return data


def dump(cfg: dict) -> str:
    """Settings as YAML, in declaration order, small mappings and lists on one line; read back the same."""
    return yaml.dump(cfg, Dumper=StrictDumper, sort_keys=False, default_flow_style=None).rstrip()
