"""Safe YAML in and out of specs, and preset lookup."""
from __future__ import annotations

import hashlib
import itertools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import ValidationError

from ._base import json_schema  # noqa: F401  (public here: the JSON Schema of spec, space and ablation files)
from .errors import SpecError, first_error
from .net import NetSpec

PRESET_PACKAGE = "archspace.presets"


def read_yaml(path: Union[str, Path]) -> Any:
    """Load a YAML file safely (tags refused); errors become one-line SpecErrors naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_yaml(decode_text(data, str(path)), str(path))


def decode_text(data: bytes, source: str = "<bytes>") -> str:
    """UTF-8 text of a file's bytes (a UTF-8 or UTF-16 byte-order mark is honoured); one-line SpecError for binary or other encodings."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            break
    else:
        codec = "utf-8"
        if b"\x00" in data:
            raise SpecError(f"{source}: a binary file, not YAML text (give a .yaml spec, space or ablation file)")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not {codec.upper().replace('-SIG', '')} text (byte 0x{exc.object[exc.start]:02x} at offset "
                        f"{exc.start}; save the file as UTF-8)") from None


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
        if mark is not None:
            where = f": line {mark.line + 1} column {mark.column + 1}"
        elif isinstance(exc, yaml.reader.ReaderError):
            where = f": character {exc.position + 1}"
        else:
            where = ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}{where}: malformed YAML ({' '.join(str(problem).split())})") from None
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


def preset_comment(name: str) -> str:
    """A preset file's leading comment, as one line of text."""
    if name not in preset_names():
        raise SpecError(f"{name}: not a preset (presets: {', '.join(preset_names())})")
    lines = preset_path(name).read_text().splitlines()
    return " ".join(line[1:].strip() for line in itertools.takewhile(lambda line: line.startswith("#"), lines))


def preset_about(name: str) -> str:
    """The first sentence of a preset file's leading comment, e.g. 'SMT-T (Lin et al. 2023, Table 13; official smt_t).'."""
    return first_sentence(preset_comment(name))


_ABBREVIATIONS = {"al", "e.g", "i.e", "cf", "vs", "fig", "tab", "eq", "no", "approx"}


def first_sentence(text: str) -> str:
    """``text`` up to its first full stop (then a space or the end) outside brackets and not ending an abbreviation (et al.)."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch in ".!?" and depth == 0 and (i + 1 == len(text) or text[i + 1].isspace()):
            words = text[:i].split()
            if words and words[-1].lower().rstrip(".") in _ABBREVIATIONS:
                continue
            return text[:i + 1]
    return text.strip()


def spec_from_dict(data: Any, source: str = "") -> NetSpec:
    """Validate a plain mapping into a NetSpec; one-line SpecError naming the field on failure."""
    if data is None:
        raise SpecError(f"{source or 'spec'}: empty (a spec is a mapping with stem, stages and head; see archspace build smt_t --format yaml)")
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
