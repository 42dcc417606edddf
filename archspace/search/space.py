"""Search spaces: a YAML file naming a base network, searchable spec fields, constraints, objectives.

One define-by-run function (:func:`suggest`) serves Optuna and Ray Tune's ``OptunaSearch``; it only
asks the trial for values. :func:`spec_for` turns sampled values into a validated spec, editing the
base in its *editable form*: each stage as counts + strategy + one template per block kind.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from ..spec._base import MAX_INT, BigInt, PosFloat, PosInt, Spec
from ..spec.blocks import BLOCK_SPECS
from ..spec.errors import SpecError, first_error
from ..spec.io import load_spec, read_yaml, spec_from_dict, spec_to_dict
from ..spec.net import NetSpec
from ..spec.stacking import alternate, sequential
from ..evaluate.budget import TrainBudget
from ..measure.latency.settings import LatencySettings
from ..vocab import COLUMNS, Convention, Direction, EvaluatorKind, Metric

Scalar = Union[bool, int, float, str]


class Param(Spec):
    """One searchable value: a flat name, the spec path(s) it sets, and its choices or range."""

    name: str
    path: Union[str, list[str]]
    choices: Optional[list[Union[Scalar, list[int]]]] = None
    low: Optional[Union[int, float]] = None
    high: Optional[Union[int, float]] = None
    step: Optional[Union[int, float]] = None
    log: bool = False

    @field_validator("name")
    @classmethod
    def _flat(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"{v!r} must be a flat identifier (letters, digits, _; no '/' or '.')")
        return v

    @model_validator(mode="after")
    def _one_domain(self) -> "Param":
        values = [*(self.choices or []), self.low, self.high, self.step]
        flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
        for v in flat:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not (math.isfinite(v) and abs(v) <= MAX_INT):
                raise ValueError(f"{v!r} is out of range (values must be finite and at most {MAX_INT:,} in size)")
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices: empty choice list (give at least one value)")
        else:
            if self.low is None or self.high is None:
                raise ValueError("needs choices, or low and high")
            if self.low > self.high:
                raise ValueError(f"low {self.low} is above high {self.high}")
            if self.log and self.low <= 0:
                raise ValueError("log: a log range needs low > 0")
        return self

    @property
    def paths(self) -> list[str]:
        """The spec paths this value is written to."""
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def is_int(self) -> bool:
        """An integer range."""
        return self.choices is None and all(isinstance(v, int) for v in (self.low, self.high) if v is not None) \
            and (self.step is None or isinstance(self.step, int))

    def encoded_choices(self) -> list[Scalar]:
        """Choices as Optuna accepts them (lists become '3,5,7' strings)."""
        return [",".join(map(str, c)) if isinstance(c, list) else c for c in self.choices or []]

    def decode(self, value: Any) -> Any:
        """Turn a sampled value back into the spec value."""
        if self.choices is not None and any(isinstance(c, list) for c in self.choices) and isinstance(value, str):
            return [int(v) for v in value.split(",")]
        return value


class Objective(Spec):
    """A metric to optimise, with its direction (and FLOP convention)."""

    metric: Metric
    direction: Direction
    convention: Convention = "smt-paper"

    @property
    def key(self) -> str:
        """Column name of this objective in result tables."""
        return COLUMNS[self.metric]


class Constraints(Spec):
    """Hard limits, checked with the cheap complexity (latency: measured) before any training.

    Each limit is an Optuna constraint of every trial, ``value / limit - 1`` (feasible at 0 or below,
    in the order of :attr:`names`), so NSGA-II's constrained domination, TPE and optuna-dashboard see
    feasibility. ``infeasible`` says what happens to a sample over a limit: ``skip`` (default) does not
    train it (an Optuna PRUNED trial when an objective needs training, COMPLETE when every objective is
    a cost); ``train`` trains it anyway (a COMPLETE trial), which costs a training per such sample and
    shows what the limit costs in accuracy. Either way its verdict is ``infeasible`` and it is never on
    the front.
    """

    max_params: Optional[BigInt] = None
    max_flops: Optional[PosFloat] = None
    flops_convention: Convention = "smt-paper"
    max_latency_ms: Optional[PosFloat] = None
    infeasible: Literal["skip", "train"] = "skip"

    @property
    def names(self) -> list[str]:
        """The limits this space sets, in the order of the trials' Optuna constraint values."""
        return [n for n in ("max_params", "max_flops", "max_latency_ms") if getattr(self, n) is not None]

    def violations(self, cost: dict[str, int], latency_ms: Optional[float] = None) -> dict[str, Optional[float]]:
        """``value / limit - 1`` per limit (> 0: violated); None for latency not measured (yet)."""
        measured = {"max_params": cost["params"], "max_flops": cost[self.flops_convention], "max_latency_ms": latency_ms}
        return {n: None if measured[n] is None else measured[n] / getattr(self, n) - 1.0 for n in self.names}

    def first_violation(self, cost: dict[str, int], latency_ms: Optional[float] = None) -> Optional[str]:
        """The first violated limit, as a sentence, or None."""
        v = self.violations(cost, latency_ms)
        if (v.get("max_params") or 0) > 0:
            return f"params {cost['params']:,} > max_params {self.max_params:,}"
        if (v.get("max_flops") or 0) > 0:
            return f"{self.flops_convention} MACs {cost[self.flops_convention]:.4g} > max_flops {self.max_flops:.4g}"
        if (v.get("max_latency_ms") or 0) > 0:
            return f"latency {latency_ms:.2f} ms > max_latency_ms {self.max_latency_ms}"
        return None


class Evaluator(Spec):
    """How accuracy is measured: proxy training (with its budget) or a zero-cost proxy.

    ``budget`` is resolved when the evaluator is read: a file gives overrides (``budget: {epochs: 1}``) of the
    device's default, ``TrainBudget.for_device(device)``; a stored space's whole budget reads back as itself.
    """

    kind: EvaluatorKind = "train"
    dataset: str = "fashion-mnist"
    dataset_root: Optional[str] = None
    budget: TrainBudget = Field(default_factory=TrainBudget.for_device,
                                description="the device's default training budget with the file's overrides")
    device: str = "cpu"
    threads: Optional[PosInt] = None

    @model_validator(mode="before")
    @classmethod
    def _resolve_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("budget", {}), dict):
            device = data.get("device", "cpu")
            default = TrainBudget.for_device(device if isinstance(device, str) else "cpu")
            data = {**data, "budget": {**default.model_dump(), **data.get("budget", {})}}
        return data

    def on_device(self, device: str) -> "Evaluator":
        """This evaluator on another device: the budget's changes from the old device's default, on the new one's."""
        default = TrainBudget.for_device(self.device).model_dump()
        changes = {k: v for k, v in self.budget.model_dump().items() if v != default[k]}
        return type(self).model_validate({**self.model_dump(), "device": device, "budget": changes})

    @property
    def key(self) -> str:
        """Identity of the evaluator (cache key next to the spec hash)."""
        import json
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


LatencySource = Literal["measured", "predicted"]


class Measure(LatencySettings):
    """Protocol of the cost measurements: the FLOP resolution and the latency settings (shared with ``profile``),
    where latency comes from, and how CPU latency is calibrated.

    ``latency``: ``measured`` (each trial's network is timed here; ``true`` means this), ``predicted`` (the latency
    model of the device profile ``profile``: the same value on every worker, nothing timed) or ``false``.
    ``profile``: a device profile (``archspace device measure``), looked up beside the space file first, then in
    the working folder. With measured
    CPU latency it names the calibration reference, so latencies are in that profile's unit and runs on the same
    kind of machine agree; without one each run calibrates against its own reference (``calibrate``).
    ``report_profiles``: more device profiles whose predicted latency every trial records (``latency_ms:NAME``
    columns) without searching or constraining on it.
    """

    model_config = Spec.model_config
    latency: Union[LatencySource, bool] = "measured"
    calibrate: bool = True  # CPU: latencies rescaled by an interleaved reference workload
    profile: Optional[str] = None
    report_profiles: Annotated[list[str], Field(max_length=16)] = Field(default_factory=list)

    @field_validator("latency", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        if v is True or v is False or v in ("measured", "predicted"):
            return "measured" if v is True else v
        raise ValueError(f"{v!r} is not a latency source; use measured, predicted or false (true means measured)")

    @model_validator(mode="after")
    def _profile_needed(self) -> "Measure":
        if self.latency == "predicted" and not self.profile:
            raise ValueError("profile: latency: predicted needs a device profile (measure one with archspace "
                             "device measure --out devices/NAME.json, then set measure.profile: devices/NAME.json)")
        return self

    @property
    def timed(self) -> bool:
        """True when every trial's network is timed on this machine (latency: measured)."""
        return self.latency == "measured"


class Sampler(Spec):
    """The search algorithm."""

    kind: Literal["nsga2", "tpe", "random", "gp", "grid"] = "nsga2"
    population_size: Optional[PosInt] = None
    startup_trials: Optional[PosInt] = None
    pruner: Literal["median", "halving", "none"] = "median"  # single-objective training searches only
    by: Annotated[list[str], Field(max_length=8)] = Field(default_factory=list)
    """kind random: a population balanced over these parameters (:mod:`archspace.search.population`)."""


class SearchBudget(Spec):
    """How many finished trials, and an optional wall-clock limit."""

    trials: BigInt = 20
    timeout_s: Optional[PosFloat] = None


class Workers(Spec):
    """How workers sharing a storage look after each other: heartbeat, grace period, retries of crashed trials."""

    heartbeat_s: Annotated[int, Field(ge=1, le=3600)] = 10
    grace_s: Annotated[int, Field(ge=2, le=86400)] = 60
    max_retries: Annotated[int, Field(ge=0, le=100)] = 2

    @model_validator(mode="after")
    def _check(self) -> "Workers":
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(f"grace_s: {self.grace_s} must exceed heartbeat_s {self.heartbeat_s} (use at least twice it)")
        return self


class Space(Spec):
    """A search space file."""

    name: str
    base: Union[str, dict[str, Any]]
    params: Annotated[list[Param], Field(min_length=1)]
    objectives: Annotated[list[Objective], Field(min_length=1)]
    constraints: Constraints = Field(default_factory=Constraints)
    evaluator: Evaluator = Field(default_factory=Evaluator)
    measure: Measure = Field(default_factory=Measure)
    sampler: Sampler = Field(default_factory=Sampler)
    budget: SearchBudget = Field(default_factory=SearchBudget)
    workers: Workers = Field(default_factory=Workers)
    seed: int = 0
    num_classes: PosInt = 10
    enqueue_base: bool = True
    references: list[str] = Field(default_factory=list, max_length=32)  # presets or spec files measured beside the trials
    description: str = ""
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        from ..files import check_name

        return check_name(v)

    @model_validator(mode="after")
    def _check(self) -> "Space":
        names = [p.name for p in self.params]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"params: duplicate name {sorted(dup)[0]!r} (names must be unique)")
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError("objectives: the same metric twice")
        for name in self.sampler.by:
            p = next((p for p in self.params if p.name == name), None)
            if p is None:
                raise ValueError(f"sampler.by: {name!r} is not a parameter of the space (use one of {names})")
            if self.sampler.kind != "random":
                raise ValueError(f"sampler.by: a population balanced over {name} is a random sample; "
                                 f"use sampler.kind: random (--sampler random)")
            if p.choices is None and not p.is_int:
                raise ValueError(f"sampler.by: {name} is a float range; balance over choices or an integer range")
            if p.choices is None and (int(p.high) - int(p.low)) // int(p.step or 1) + 1 > 64:
                raise ValueError(f"sampler.by: {name} has more than 64 values; balance over fewer")
            if any(path.startswith("@") for path in p.paths):
                raise ValueError(f"sampler.by: {name} sets {p.paths[0]}; balance over a spec field")
        if len(set(self.sampler.by)) != len(self.sampler.by):
            raise ValueError("sampler.by: a parameter named twice")
        if self.sampler.kind == "grid" and any(p.choices is None and not p.is_int for p in self.params):
            raise ValueError("sampler.kind: grid needs choices or integer ranges for every parameter")
        for p in self.params:
            for path in p.paths:
                if path == "@variant" and (p.choices is None or not set(p.choices) <= set(self.variants)):
                    raise ValueError(f"params: {p.name} chooses among variants; its choices must be names in variants")
                if path.startswith("@") and path not in ("@variant", "@seed"):
                    raise ValueError(f"params: {p.name}: unknown special path {path!r} (use @variant or @seed)")
        if not self.measure.latency and ({"latency", "throughput"} & set(metrics) or self.constraints.max_latency_ms):
            raise ValueError("measure.latency: a latency objective or constraint needs measure.latency: measured or predicted")
        return self

    @property
    def directions(self) -> list[str]:
        """Optuna directions, one per objective."""
        return [o.direction for o in self.objectives]


# ----------------------------------------------------------------------------- editable form


def _periodic(values: list) -> Any:
    """A constant, or the shortest list that cycles to give ``values``."""
    if all(v == values[0] for v in values):
        return values[0]
    for p in range(2, len(values) + 1):
        if all(values[i] == values[i % p] for i in range(len(values))):
            return values[:p]
    return values


def editable(spec: NetSpec) -> dict:
    """The spec as editable data: per stage ``stack`` (strategy + counts) and one template per kind."""
    data = spec_to_dict(spec)
    for stage, sstage in zip(data["stages"], spec.stages):
        blocks = stage.pop("blocks")
        kinds = [b["kind"] for b in blocks]
        counts: dict[str, int] = {}
        for k in kinds:
            counts[k] = counts.get(k, 0) + 1
        if kinds == sequential(counts):
            stage["stack"] = {"strategy": "sequential", "counts": counts}
        elif kinds == alternate(counts):
            stage["stack"] = {"strategy": "alternate", "counts": counts}
        else:
            stage["stack"] = {"strategy": "pattern", "pattern": kinds}
        for kind in counts:
            of_kind = [b for b in blocks if b["kind"] == kind]
            template = {}
            for key in of_kind[0]:
                if key == "kind":
                    continue
                template[key] = _periodic([b[key] for b in of_kind])
            for key, value in BLOCK_SPECS[kind].derived(template).items():
                if template.get(key) == value:
                    template.pop(key)  # recomputed from the fields it derives from when those are searched
            stage[kind] = template
    return data


_TOKEN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]+)\])?$")


def _indices(sel: str, length: int) -> list[int]:
    if sel == "*":
        return list(range(length))
    out = []
    for part in sel.split(","):
        if ":" in part:
            a, b = part.split(":")
            out.extend(range(int(a or 0), int(b) if b else length))
        else:
            out.append(int(part))
    for i in out:
        if not -length <= i < length:
            raise IndexError(i)
    return out


def set_path(data: dict, path: str, value: Any) -> None:
    """Write ``value`` at a dotted path such as ``stages[2].sam.heads`` or ``stages[*].stack.counts.msa``."""
    tokens = path.split(".")

    def walk(node: Any, i: int) -> None:
        m = _TOKEN.match(tokens[i])
        if not m:
            raise ValueError(f"bad path element {tokens[i]!r}")
        key, sel = m.group(1), m.group(2)
        last = i == len(tokens) - 1
        if sel is None:
            if not isinstance(node, dict):
                raise ValueError(f"{key!r} is not inside a mapping")
            if last:
                node[key] = value
            else:
                walk(node.setdefault(key, {}), i + 1)
            return
        seq = node.get(key) if isinstance(node, dict) else None
        if not isinstance(seq, list):
            raise ValueError(f"{key!r} is not a list")
        try:
            idx = _indices(sel, len(seq))
        except (IndexError, ValueError):
            raise ValueError(f"{key}[{sel}] is out of range (there are {len(seq)})") from None
        for j in idx:
            if last:
                seq[j] = value
            else:
                walk(seq[j], i + 1)

    walk(data, 0)


def apply_values(base: dict, space: Space, values: dict[str, Any]) -> dict:
    """Editable base with the sampled values written at their paths (a deep copy)."""
    import copy

    data = copy.deepcopy(base)
    for p in space.params:
        if p.name in values:
            for path in p.paths:
                if not path.startswith("@"):
                    set_path(data, path, p.decode(values[p.name]))
    for stage in data.get("stages", []):
        stack = stage.get("stack", {})
        if stack.get("strategy") != "pattern":
            stack.pop("pattern", None)
            if "counts" in stack:
                stack["counts"] = {k: n for k, n in stack["counts"].items() if n != 0} or stack["counts"]
        for kind, spec in BLOCK_SPECS.items():
            tmpl = stage.get(kind)
            if isinstance(tmpl, dict):
                tmpl.update({k: v for k, v in spec.derived(tmpl).items() if k not in tmpl})
    return data


def spec_for(space: Space, values: dict[str, Any], base: Optional[dict] = None) -> NetSpec:
    """The validated spec of sampled values; SpecError with the reason when the sample is impossible."""
    variant = next((values[p.name] for p in space.params if "@variant" in p.paths and p.name in values), None)
    if variant is not None:
        base = editable(spec_from_dict(space.variants[variant], f"variants.{variant}"))
    base = base if base is not None else editable(base_spec(space))
    data = apply_values(base, space, values)
    data["num_classes"] = space.num_classes
    data["name"] = f"{space.name}" if variant is None else str(variant)
    return spec_from_dict(data)


def seed_of(space: Space, values: dict[str, Any]) -> int:
    """The evaluation seed of a sample: its @seed parameter, else the space's seed."""
    return next((int(values[p.name]) for p in space.params if "@seed" in p.paths and p.name in values), space.seed)


def base_spec(space: Space) -> NetSpec:
    """The base network of the space."""
    if isinstance(space.base, dict):
        return spec_from_dict(space.base, "base")
    return load_spec(space.base)


def base_values(space: Space) -> Optional[dict[str, Any]]:
    """The parameter values that reproduce the base network, when every one is in its domain."""
    data = editable(base_spec(space))
    out: dict[str, Any] = {}
    for p in space.params:
        try:
            value = _get_path(data, p.paths[0])
        except KeyError:
            if ".stack.counts." in p.paths[0]:
                value = 0  # a kind the base stage does not have
            elif re.search(rf"\.({'|'.join(BLOCK_SPECS)})\.", p.paths[0]) and p.choices is not None:
                out[p.name] = p.encoded_choices()[0]  # template of a kind the base does not use: no effect
                continue
            else:
                return None
        except (IndexError, TypeError, ValueError):
            return None
        if p.choices is not None:
            v = ",".join(map(str, value)) if isinstance(value, list) else value
            match = [c for c in p.encoded_choices() if c == v and type(c) is not bool]
            if not match:
                return None
            out[p.name] = match[0]
        elif p.low <= value <= p.high:
            out[p.name] = value
        else:
            return None
    return out


def _get_path(data: Any, path: str) -> Any:
    node = data
    for tok in path.split("."):
        m = _TOKEN.match(tok)
        key, sel = m.group(1), m.group(2)
        node = node[key]
        if sel is not None:
            node = node[0 if sel == "*" else int(sel.split(",")[0].split(":")[0] or 0)]
    if isinstance(node, dict) and "kernel_sizes" not in path:
        raise ValueError(path)
    return node


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """Define-by-run: ask an Optuna trial (or Ray's OptunaSearch trial) for every parameter; nothing else."""
    values: dict[str, Any] = {}
    for p in space.params:
        if p.choices is not None:
            values[p.name] = trial.suggest_categorical(p.name, p.encoded_choices())
        elif p.is_int:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
    return values


def grid(space: Space) -> dict[str, list]:
    """The full grid of every parameter (for the grid sampler)."""
    out = {}
    for p in space.params:
        if p.choices is not None:
            out[p.name] = p.encoded_choices()
        else:
            out[p.name] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
    return out


def grid_size(space: Space) -> int:
    """How many points the full grid has."""
    return math.prod(len(v) for v in grid(space).values())


def load_space(path: Union[str, Path], *, check: bool = True) -> Space:
    """Load and check a space file; one-line SpecError naming the field on any problem. ``check=False`` validates
    the fields only (the base, references and device profiles are not opened): reading a finished run's space."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with base, params, objectives")
    def beside(ref: Any) -> Any:  # a spec file named relative to the space file
        candidate = path.parent / ref if isinstance(ref, str) else None
        return str(candidate) if candidate is not None and candidate.suffix in (".yaml", ".yml") and candidate.exists() else ref

    if isinstance(data.get("base"), str):
        data = {**data, "base": beside(data["base"])}
    if isinstance(data.get("references"), list):
        data = {**data, "references": [beside(r) for r in data["references"]]}
    measure = data.get("measure")
    if isinstance(measure, dict):  # device profiles: beside the space file first, as spec files, then the working folder
        def near(ref: Any) -> Any:
            if not isinstance(ref, str) or not ref or Path(ref).is_absolute():
                return ref
            candidate = path.parent / ref
            return str((candidate if candidate.exists() or not Path(ref).exists() else Path(ref)).resolve())

        measure = {**measure, **({"profile": near(measure["profile"])} if "profile" in measure else {})}
        if isinstance(measure.get("report_profiles"), list):
            measure["report_profiles"] = [near(r) for r in measure["report_profiles"]]
        data = {**data, "measure": measure}
    for i, obj in enumerate(data.get("objectives") if isinstance(data.get("objectives"), list) else []):
        if isinstance(obj, dict) and "metric" in obj and "direction" not in obj:
            raise SpecError(f"{path}: objectives[{i}].direction: missing (use maximize or minimize)")
    try:
        space = Space.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {first_error(exc)}") from None
    if check:
        check_space(space, str(path))
    return space


def check_space(space: Space, source: str = "space") -> None:
    """Deeper checks: the base loads, every path exists, constraints are possible, the budget is valid."""
    try:
        base = base_spec(space)
    except SpecError as exc:
        raise SpecError(f"{source}: base: {exc}") from None
    for i, ref in enumerate(space.references):
        try:
            load_spec(ref)
        except SpecError as exc:
            raise SpecError(f"{source}: references[{i}]: {exc}") from None
    for label, variant in space.variants.items():
        try:
            spec_from_dict(variant, f"variants.{label}")
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None
    data = editable(base)
    if not space.variants:
        try:
            spec_for(space, {}, data)
        except SpecError as exc:
            raise SpecError(f"{source}: base: {exc}") from None
    for i, p in enumerate(space.params):
        probe = p.choices[0] if p.choices is not None else p.low
        for path in p.paths:
            if path.startswith("@"):
                continue
            problem = path_problem(path, base)
            if problem is None:
                try:
                    set_path(_copy(data), path, probe)
                except ValueError as exc:
                    problem = str(exc)
            if problem is not None:
                raise SpecError(f"{source}: params[{i}].path: {path}: {problem}") from None
        if not space.variants:
            reasons = _choice_failures(space, p, data)
            if reasons is not None:
                field = "choices" if p.choices is not None else "low"
                raise SpecError(f"{source}: params[{i}].{field}: no value of {p.name} gives a valid network on the base "
                                f"(first, {reasons}; change the values or the base)") from None
    from .latency import check as check_profiles

    check_profiles(space, base, source)
    c = space.constraints
    if c.max_params is not None or c.max_flops is not None:
        floor = _smallest_cost(space, data)
        if c.max_params is not None and c.max_params < floor["params"]:
            raise SpecError(f"{source}: constraints.max_params: {c.max_params:,} is below the smallest network of the space "
                            f"(at least {floor['params']:,} params: raise it)")
        if c.max_flops is not None and c.max_flops < floor[c.flops_convention]:
            raise SpecError(f"{source}: constraints.max_flops: {c.max_flops:.3g} is below the smallest network of the space "
                            f"(at least {floor[c.flops_convention]:.3g} MACs in {c.flops_convention}: raise it)")


def _probes(p: Param) -> list[Any]:
    """The values of a parameter tried alone on the base: every choice, or a range's ends and middle."""
    if p.choices is not None:
        return p.encoded_choices()
    if p.is_int:
        step = int(p.step or 1)
        mid = int(p.low) + (int(p.high) - int(p.low)) // (2 * step) * step
        return sorted({int(p.low), mid, int(p.high)})
    return [p.low, (p.low + p.high) / 2, p.high]


def _choice_failures(space: Space, p: Param, data: dict) -> Optional[str]:
    """'value: reason' of the first probe when every probe of ``p`` alone on the base is an invalid network; else None."""
    if any(path.startswith("@") for path in p.paths):
        return None
    first = None
    for value in _probes(p):
        try:
            spec_for(space, {p.name: value}, data)
            return None
        except (SpecError, ValueError) as exc:
            first = first or f"{value!r}: {exc}"
    return first


def _models(annotation: Any) -> list[type]:
    """The pydantic spec classes inside a field annotation (through Optional, Union, Annotated, tuple, list)."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, Spec):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _stage_fields() -> dict[str, Any]:
    """What a stage of the editable form holds: StageSpec's fields but blocks, ``stack``, one template per block kind."""
    import inspect

    from ..spec.net import StageSpec
    from ..spec.stacking import expand

    fields: dict[str, Any] = {k: f.annotation for k, f in StageSpec.model_fields.items() if k != "blocks"}
    stack = {name: None for name in inspect.signature(expand).parameters}  # strategy, counts, kinds, depth, pattern
    stack["counts"] = {kind: None for kind in BLOCK_SPECS}
    fields["stack"] = stack
    fields.update({kind: spec for kind, spec in BLOCK_SPECS.items()})
    return fields


def _fields_of(node: Any, instance: Any) -> Optional[dict[str, Any]]:
    """The sub-fields at a point of the schema walk (a name -> sub-schema mapping), or None for a value."""
    if isinstance(node, dict):
        return node
    models = _models(node)
    union = len(models) > 1  # a union (the stem): its kind can be searched, its fields are the base's kind's
    if union and instance is not None:
        models = [type(instance)]
    if not models:
        return None
    return {k: f.annotation for m in models for k, f in m.model_fields.items() if k != "kind" or union}


def path_problem(path: str, base: NetSpec) -> Optional[str]:
    """Why ``path`` addresses no field of the base's editable form ('sam has no field 'haeds' (did you mean
    'heads'?)'), or None. Fields come from the spec models and the block registry; a block kind the base
    stage lacks has its spec's fields (apply_values fills that kind's defaults)."""
    import difflib

    node: Any = {k: f.annotation for k, f in NetSpec.model_fields.items()}
    instance: Any = base
    owner = "the network"
    for tok in path.split("."):
        m = _TOKEN.match(tok)
        if m is None:
            return f"bad path element {tok!r} (use name or name[index])"
        key, sel = m.group(1), m.group(2)
        fields = _fields_of(node, instance)
        if fields is None:
            return f"{owner} is a value, not a mapping (end the path at {owner})"
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"use one of {sorted(fields)}"
            return f"{owner} has no field {key!r} ({hint})"
        instance = getattr(instance, key, None) if isinstance(instance, Spec) else None
        if key == "stages" and owner == "the network":
            if sel is None:
                return "stages is a list: select stages with stages[i], stages[a:b] or stages[*]"
            node, instance, owner = _stage_fields(), None, f"stages[{sel}]"
            continue
        if sel is not None:
            return None  # an index into a list value: set_path checks it
        node, owner = fields[key], key
    return None


def _copy(data: dict) -> dict:
    import copy
    return copy.deepcopy(data)


def _smallest_cost(space: Space, data: dict) -> dict[str, int]:
    """A lower bound on cost over the space: every parameter at its smallest numeric value (valid specs only)."""
    from ..measure.complexity import complexity

    values = {}
    for p in space.params:
        if p.choices is not None:
            nums = [c for c in p.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
            values[p.name] = min(nums) if len(nums) == len(p.choices) else p.encoded_choices()[0]
        else:
            values[p.name] = p.low
    try:
        spec = spec_for(space, values, data)
    except SpecError:
        return {"params": 0, "smt-paper": 0, "fvcore": 0, "full": 0}
    return complexity(spec, space.measure.resolution, num_classes=space.num_classes)


class _RandomTrial:
    """An Optuna-like trial drawing every parameter uniformly (log-uniformly where the parameter says ``log``)."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return choices[self.rng.randrange(len(choices))]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if log:
            return min(high, max(low, round(math.exp(self.rng.uniform(math.log(low), math.log(high))))))
        return low + step * self.rng.randrange((high - low) // step + 1)

    def suggest_float(self, name: str, low: float, high: float, step: Optional[float] = None, log: bool = False) -> float:
        if log:
            return math.exp(self.rng.uniform(math.log(low), math.log(high)))
        if step:
            return low + step * self.rng.randrange(int(round((high - low) / step)) + 1)
        return self.rng.uniform(low, high)


def sample_specs(space: Space, n: int, seed: int = 0, *, exclude: Sequence[str] = (),
                 attempts: int = 20) -> list[tuple[dict[str, Any], NetSpec]]:
    """Up to ``n`` distinct valid specs drawn uniformly from the space (values, spec), none whose hash is in
    ``exclude``; impossible samples are skipped, at most ``attempts * n`` draws."""
    import random

    from ..spec.io import spec_hash

    rng = random.Random(seed)
    seen = set(exclude)
    out: list[tuple[dict[str, Any], NetSpec]] = []
    base = editable(base_spec(space))
    for _ in range(attempts * n):
        if len(out) >= n:
            break
        values = suggest(_RandomTrial(rng), space)
        try:
            spec = spec_for(space, values, base if not any("@variant" in p.paths for p in space.params) else None)
        except SpecError:
            continue
        h = spec_hash(spec)
        if h not in seen:
            seen.add(h)
            out.append((values, spec))
    return out
