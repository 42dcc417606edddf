"""Fuzzed and malformed input: every leaf of preset specs and spaces replaced by a bad value, binary and non-UTF-8 files.

``archspace validate`` must accept the file (exit 0) or refuse it in one line (exit 2); never a traceback.
smt_t, efficientmod_xxs (compact preset files, where whole sub-trees are replaced too, and the expanded
``build --format yaml`` form) and spaces/smt.yaml have every leaf fuzzed; the other presets and spaces a
deterministic sample of (leaf, value) pairs.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from archspace.cli import main
from archspace.spec.io import dump_spec, load_spec, preset_names, preset_path

SPACES = Path(__file__).resolve().parents[1] / "spaces"
VALUES = [-1, 0, 1e9, "x", None, 2.5, [1]]
FULL = ("smt_t", "efficientmod_xxs")


def leaves(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths of every leaf (a scalar or an empty container) of a YAML document."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, path + (key,))
    elif isinstance(node, list) and node:
        for i, value in enumerate(node):
            yield from leaves(value, path + (i,))
    else:
        yield path


def nodes(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths of every value of a YAML document, leaves and whole sub-trees (the root excepted)."""
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from nodes(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from nodes(value, path + (i,))


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)
    return doc


def cases(name: str) -> tuple[Any, list[tuple[tuple, Any]]]:
    """A document and the (leaf, value) replacements to try on it."""
    form, _, what = name.partition(":")
    if form == "space":
        doc = yaml.safe_load((SPACES / what).read_text())
    elif form == "compact":
        doc = yaml.safe_load(preset_path(what).read_text())
    else:
        doc = yaml.safe_load(dump_spec(load_spec(what)))
    # compact presets and spaces/smt.yaml: whole sub-trees too
    paths = list(nodes(doc) if (form == "compact" and what in FULL) or what == "smt.yaml" else leaves(doc))
    if what in FULL + ("smt.yaml",) and form != "expanded":
        pairs = [(p, v) for p in paths for v in VALUES]
    elif what in FULL:  # the expanded form repeats each block: every leaf, two values each
        pairs = [(p, VALUES[k % len(VALUES)]) for i, p in enumerate(paths) for k in (i, i + 3)]
    else:  # a deterministic sample: every 11th pair of the product (11 and 7 coprime: every value is used)
        pairs = [(p, v) for p in paths for v in VALUES][::11]
    return doc, pairs


def validate(path: Path, capsys) -> tuple[Any, str]:
    """Exit status of ``archspace validate path`` (or the exception it raised) and its stderr."""
    try:
        rc = main(["validate", str(path)])
    except BaseException as exc:  # noqa: BLE001 - a traceback is the defect this test looks for
        rc = f"{type(exc).__name__}: {exc}"
    return rc, capsys.readouterr().err


def refused_in_one_line(rc: Any, err: str) -> bool:
    return rc == 0 or (rc == 2 and err.count("\n") == 1 and err.startswith("archspace: error: "))


DOCUMENTS = ([f"{form}:{n}" for n in FULL for form in ("compact", "expanded")] + ["space:smt.yaml"]
             + [f"compact:{n}" for n in preset_names() if n not in FULL]
             + [f"space:{p.name}" for p in sorted(SPACES.glob("*.yaml")) if p.name != "smt.yaml"])


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_fuzzed_leaf_is_accepted_or_refused_in_one_line(name, tmp_path, capsys):
    doc, pairs = cases(name)
    assert pairs
    path = tmp_path / "fuzzed.yaml"
    failures = []
    for leaf, value in pairs:
        path.write_text(yaml.safe_dump(replaced(doc, leaf, value), sort_keys=False))
        rc, err = validate(path, capsys)
        if not refused_in_one_line(rc, err):
            failures.append((leaf, value, rc, err[-300:]))
    assert not failures, f"{len(failures)} of {len(pairs)} fuzzed files: {failures[:5]}"


@pytest.mark.parametrize("data, message", [
    (bytes(range(256)) * 4, "a binary file, not YAML text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "a binary file, not YAML text"),
    (b"\x7fELF\x02\x01\x01\x00", "a binary file, not YAML text"),
    ("name: caf\xe9\nstages: []\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9; save the file as UTF-8)"),
    (b"\xff\xfen\x00a\x00m\x00e\x00:\x00 \x00\x00\xd8", "not UTF-16 text"),  # a BOM, then a lone surrogate
    (b"", "expected a mapping"),
    (b"  \n# only a comment\n", "expected a mapping"),
    (b"name: a\x07b\n", "character 8: malformed YAML (unacceptable character #x0007"),
    (b"- 1\n- 2\n", "expected a mapping"),
])
def test_files_that_are_no_yaml_mapping_get_one_line(data, message, tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    rc, err = validate(path, capsys)
    assert refused_in_one_line(rc, err) and rc == 2, (rc, err)
    assert err.startswith(f"archspace: error: {path}: {message}")
