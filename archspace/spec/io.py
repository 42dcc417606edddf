"""Safe YAML in and out of specs, and preset lookup."""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import ValidationError

from .errors import SpecError, first_error
from .net import NetSpec

PRESET_PACKAGE = "archspace.presets"


def read_yaml(path: Union[str, Path]) -> Any:
    """Load a YAML file safely (tags refused); errors become one-line SpecErrors naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with the safe loader; one-line error with line and column on failure."""
    if _flow_depth(text) > MAX_YAML_DEPTH:
        raise SpecError(f"{source}: malformed YAML (nested more than {MAX_YAML_DEPTH} levels deep; a spec needs only a few)")
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise SpecError(f"{source}: malformed YAML (nested too deeply; a spec needs only a few levels)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}:{where}: malformed YAML ({' '.join(str(problem).split())})") from None
    if _expanded_size(data, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise SpecError(f"{source}: YAML expands to more than {MAX_YAML_VALUES:,} values (alias chains?); write it out plainly")
    return data


MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 100


def _flow_depth(text: str) -> int:
    """Deepest nesting of flow brackets ([ and {) in the text (brackets inside quotes are counted too: an upper bound)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif ch in "]}":
            depth -= 1
    return deepest


def _expanded_size(data: Any, limit: int) -> int:
    """How many values ``data`` holds with every alias expanded, counting no further than just past ``limit``."""
    count, stack = 0, [data]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def preset_names() -> list[str]:
    """Names of the shipped preset specs."""
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def preset_path(name: str) -> Path:
    """Path of a shipped preset."""
    return Path(str(resources.files(PRESET_PACKAGE).joinpath(f"{name}.yaml")))


def spec_from_dict(data: Any, source: str = "") -> NetSpec:
    """Validate a plain mapping into a NetSpec; one-line SpecError naming the field on failure."""
    if not isinstance(data, dict):
        raise SpecError(f"{source or 'spec'}: expected a mapping with stem, stages and head, got {type(data).__name__}")
    try:
        return NetSpec.model_validate(data)
    except ValidationError as exc:
        err = first_error(exc)
        raise SpecError(f"{source}: {err}" if source else str(err)) from None


def load_spec(path_or_preset: Union[str, Path, NetSpec]) -> NetSpec:
    """Load a spec from a YAML file or a preset name (see ``archspace presets``)."""
    if isinstance(path_or_preset, NetSpec):
        return path_or_preset
    text = str(path_or_preset)
    path = Path(text)
    if not path.exists() and "/" not in text and not text.endswith((".yaml", ".yml")):
        names = preset_names()
        if text not in names:
            raise SpecError(f"{text}: neither a file nor a preset (presets: {', '.join(names)})")
        path = preset_path(text)
    return spec_from_dict(read_yaml(path), str(path_or_preset))


def spec_to_dict(spec: NetSpec) -> dict:
    """The spec as plain JSON-able data (the expanded block sequence)."""
    return spec.model_dump(mode="json")


def dump_spec(spec: NetSpec, path: Union[str, Path, None] = None) -> str:
    """Write the spec as YAML (to ``path`` if given) and return the text; loading it gives an equal spec."""
    text = yaml.safe_dump(spec_to_dict(spec), sort_keys=False, default_flow_style=None, width=100)
    if path is not None:
        Path(path).write_text(text)
    return text


def spec_hash(spec: NetSpec, length: int = 12) -> str:
    """Stable content hash of an architecture (name excluded), for caching evaluations."""
    data = spec_to_dict(spec)
    data.pop("name", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
