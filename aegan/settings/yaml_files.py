"""Config files: YAML read safely (an alias bomb, a binary file, a non-mapping each one line naming the file) and
settings written back as YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from aegan.core.errors import AeganError, shown
from aegan.core.files import dangling_link
from aegan.core.kinds import TORCH, sniff

# A config file is a few dozen settings; YAML aliases can make a small file expand to billions of nodes (the
# "billion laughs"), which would exhaust memory wherever the value is copied or shown. Refuse beyond this.
MAX_YAML_NODES = 100_000


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


def read_yaml(path: Path) -> dict:
    kind = sniff(path)
    if kind not in (None, "a settings file (YAML)", "a JSON file"):  # JSON is YAML too
        kind = "a PyTorch file (a model or a run state)" if kind == TORCH else kind
        raise AeganError(f"config file {shown(path)} is {kind}, not a YAML file of settings: give a config file "
                         "(e.g. pretrain/<dataset>/<mt>.yaml)")
    try:
        loader = yaml.SafeLoader(Path(path).read_bytes().decode("utf-8"))
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_nodes(node, {}) > MAX_YAML_NODES:
                raise AeganError(f"config file {shown(Path(path))} expands to more than {MAX_YAML_NODES} values "
                                 "through YAML aliases (&name / *name): write the settings out plainly")
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except FileNotFoundError:
        if link := dangling_link(path):
            raise AeganError(f"config file {link}: restore the file or remove the link") from None
        raise AeganError(f"config file not found: {shown(path)}") from None
    except IsADirectoryError:
        raise AeganError(f"config file {shown(path)} is a folder, not a YAML file") from None
    except UnicodeDecodeError as e:
        raise AeganError(f"config file {shown(path)} is not UTF-8 text (byte {e.start}): give a YAML file") from None
    except yaml.YAMLError as e:
        raise AeganError(f"config file {shown(path)} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise AeganError(f"config file {shown(path)} nests too deeply to be a config file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AeganError(f"config file {shown(path)} must hold a mapping of settings, not {type(data).__name__}")
    return data


def dump(cfg: dict) -> str:
    """Settings as YAML, in declaration order, small mappings and lists on one line."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None).rstrip()
