"""Network spec: stem, ordered stages of blocks, head (the tree the builder mirrors)."""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler, model_validator

from ._base import Eps, NonNegFloat, PosInt, Probability, Spec, _to_tuple
from .blocks import BLOCK_SPECS, BlockSpec
from .stacking import MAX_DEPTH, STRATEGIES, expand, pattern_string


class SMTStemSpec(Spec):
    """SMT stem: conv kxk s(stride/2) (no bias) + BN + ReLU + conv 2x2 s2 + LN; stride 4 (2: proxy for small inputs)."""

    kind: Literal["smt"] = "smt"
    kernel_size: Literal[3, 7] = 3
    stride: Literal[2, 4] = 4
    norm_eps: Eps = 1e-5


class EffModStemSpec(Spec):
    """EfficientMod stem: conv kxk with stride and padding (7/4/3) + LN."""

    kind: Literal["effmod"] = "effmod"
    kernel_size: PosInt = 7
    stride: PosInt = 4
    padding: Annotated[int, Field(ge=0)] = 3
    norm_eps: Eps = 1e-5


StemSpec = Annotated[Union[SMTStemSpec, EffModStemSpec], Field(discriminator="kind")]


class DownsampleSpec(Spec):
    """Downsampling between stages: conv kxk stride s (padding k//2 unless given) + LN."""

    kernel_size: PosInt = 3
    stride: PosInt = 2
    padding: Optional[Annotated[int, Field(ge=0)]] = None
    norm_eps: Eps = 1e-5

    @property
    def pad(self) -> int:
        """Effective padding."""
        return self.kernel_size // 2 if self.padding is None else self.padding


LIST_FIELDS = {"kernel_sizes", "context"}  # block fields whose value is itself a list


def _cycle(template: dict, index: int, kind: str) -> dict:
    """Pick the index-th value of every list given for a scalar field (per-block ratios such as [1, 6])."""
    out = {}
    for key, value in template.items():
        cycles = isinstance(value, list) and (key not in LIST_FIELDS or (value and isinstance(value[0], list)))
        if cycles:
            if not value:
                raise ValueError(f"{kind}.{key}: empty list (give a value or a non-empty list to cycle)")
            value = value[index % len(value)]
        out[key] = value
    return out


def _template_schema(block: dict) -> dict:
    """Schema of a per-kind block template: each field as in the block, or a non-empty list of such values to cycle."""
    props = {}
    for name, field in block.get("properties", {}).items():
        if name == "kind":
            props[name] = field
            continue
        props[name] = {"anyOf": [field, {"type": "array", "items": field, "minItems": 1}]}
        for key in ("title", "description", "default"):
            if key in field:
                props[name][key] = field[key]
    out = {"type": "object", "title": f"{block.get('title', 'block')} template", "properties": props,
           "additionalProperties": False}
    required = [k for k in block.get("required", ()) if k != "kind"]
    if required:
        out["required"] = required
    if "description" in block:
        out["description"] = block["description"]
    return out


def _stack_schema(kinds: list[str]) -> dict:
    """Schema of a stage's ``stack`` value (see :func:`archspace.spec.stacking.expand`)."""
    kind = {"type": "string", "enum": kinds}
    return {
        "type": "object",
        "title": "Stack",
        "description": "counts per kind (or kinds and depth, or an explicit pattern) and a stacking strategy",
        "properties": {
            "strategy": {"type": "string", "enum": list(STRATEGIES), "default": "sequential"},
            "counts": {"type": "object", "properties": {k: {"type": "integer", "minimum": 0} for k in kinds},
                       "additionalProperties": False, "minProperties": 1},
            "kinds": {"type": "array", "items": kind},
            "depth": {"type": "integer", "minimum": 1, "maximum": MAX_DEPTH},
            "pattern": {"type": "array", "items": kind, "minItems": 1, "maxItems": MAX_DEPTH},
        },
        "additionalProperties": False,
    }


class StageSpec(Spec):
    """One stage: width, its downsampling layer, its expanded block sequence, and an optional closing LN."""

    width: PosInt
    downsample: Optional[DownsampleSpec] = None
    blocks: Annotated[tuple[BlockSpec, ...], BeforeValidator(_to_tuple), Field(min_length=1)]
    norm_eps: Optional[Eps] = None

    @model_validator(mode="before")
    @classmethod
    def _expand_stack(cls, data: Any) -> Any:
        """Turn ``stack`` (counts/kinds/depth/pattern + strategy) and per-kind templates into ``blocks``."""
        if not isinstance(data, dict) or "stack" not in data:
            return data
        data = dict(data)
        stack = data.pop("stack")
        templates = {k: data.pop(k) for k in list(data) if k in BLOCK_SPECS}
        if "blocks" in data:
            raise ValueError("stack: give either stack (+ templates) or an explicit blocks list, not both")
        if not isinstance(stack, dict):
            raise ValueError("stack: expected a mapping like {strategy: alternate, counts: {sam: 4, msa: 4}}")
        unknown = set(stack) - {"strategy", "counts", "kinds", "depth", "pattern"}
        if unknown:
            raise ValueError(f"stack.{sorted(unknown)[0]}: unknown field (use strategy, counts, kinds, depth or pattern)")
        counts = stack.get("counts")
        if counts is not None:
            if not isinstance(counts, dict):
                raise ValueError("stack.counts: expected a mapping kind -> count, e.g. {sam: 4, msa: 4}")
            for kind, n in counts.items():
                if kind not in BLOCK_SPECS:
                    raise ValueError(f"stack.counts.{kind}: unknown block kind (use one of {list(BLOCK_SPECS)})")
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    raise ValueError(f"stack.counts.{kind}: {n!r} is not a count >= 0")
        for key in ("kinds", "pattern"):
            listed = stack.get(key)
            if listed is not None and not isinstance(listed, (list, tuple)):
                raise ValueError(f"stack.{key}: expected a list of block kinds, e.g. [sam, msa]")
            for kind in listed or []:
                if not isinstance(kind, str) or kind not in BLOCK_SPECS:
                    raise ValueError(f"stack.{key}: unknown block kind {kind!r} (use one of {list(BLOCK_SPECS)})")
        try:
            kinds = expand(stack.get("strategy", "sequential"), counts, stack.get("kinds"), stack.get("depth"), stack.get("pattern"))
        except ValueError as exc:
            raise ValueError(f"stack.{exc}") from None
        for kind, template in templates.items():
            if not isinstance(template, dict):
                raise ValueError(f"{kind}: block template must be a mapping of {kind} fields")
            if "kind" in template:
                raise ValueError(f"{kind}.kind: a template's key names its kind (remove kind)")
        seen: dict[str, int] = {}
        blocks = []
        for kind in kinds:
            j = seen.get(kind, 0)
            seen[kind] = j + 1
            blocks.append({"kind": kind, **_cycle(templates.get(kind, {}), j, kind)})
        data["blocks"] = blocks
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> dict:
        """The stage's schema accepts both forms load_spec reads: an explicit ``blocks`` list, or ``stack`` + per-kind templates."""
        ref = handler(core_schema)
        stage = handler.resolve_ref_schema(ref)
        mapping = stage["properties"]["blocks"]["items"]["discriminator"]["mapping"]
        templates = {kind: _template_schema(handler.resolve_ref_schema({"$ref": r})) for kind, r in mapping.items()}
        expanded = {k: stage.pop(k) for k in ("type", "properties", "required", "additionalProperties") if k in stage}
        compact = {
            "type": "object",
            "properties": {
                **{k: v for k, v in expanded["properties"].items() if k != "blocks"},
                "stack": _stack_schema(list(mapping)),
                **templates,
            },
            "required": [k for k in expanded.get("required", ()) if k != "blocks"] + ["stack"],
            "additionalProperties": False,
        }
        stage["anyOf"] = [expanded, compact]
        return ref

    @model_validator(mode="after")
    def _check_width(self) -> "StageSpec":
        for j, block in enumerate(self.blocks):
            problem = block.check(self.width)
            if problem:
                raise ValueError(f"blocks[{j}].{problem}")
        return self

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    @property
    def pattern(self) -> str:
        """The block order as letters, e.g. 'SMSMSMSM'."""
        return pattern_string(b.kind for b in self.blocks)

    def counts(self) -> dict[str, int]:
        """Blocks per kind."""
        out: dict[str, int] = {}
        for b in self.blocks:
            out[b.kind] = out.get(b.kind, 0) + 1
        return out


class HeadSpec(Spec):
    """Classifier head: global average pool (token mean as in SMT, or adaptive pool as in EfficientMod) + linear."""

    pool: Literal["mean", "avgpool"] = "mean"
    dropout: Probability = 0.0


class NetSpec(Spec):
    """A whole network: stem, ordered stages, head, input channels and classes."""

    name: Optional[str] = None
    in_chans: PosInt = 3
    num_classes: PosInt = 1000
    stem: StemSpec = Field(default_factory=SMTStemSpec)
    stages: Annotated[tuple[StageSpec, ...], BeforeValidator(_to_tuple), Field(min_length=1)]
    head: HeadSpec = Field(default_factory=HeadSpec)
    drop_path_rate: NonNegFloat = 0.0
    drop_path_schedule: Literal["linear", "uniform"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> "NetSpec":
        if self.drop_path_rate >= 1:
            raise ValueError("drop_path_rate: must be below 1 (typical 0.0-0.3)")
        if self.stages[0].downsample is not None:
            raise ValueError("stages[0].downsample: the stem downsamples the first stage (remove it)")
        for i in range(1, len(self.stages)):
            prev, cur = self.stages[i - 1], self.stages[i]
            if cur.downsample is None and cur.width != prev.width:
                raise ValueError(
                    f"stages[{i}].downsample: required when the width changes ({prev.width} -> {cur.width}); add downsample: {{kernel_size: 3}}"
                )
        return self

    @property
    def depth(self) -> int:
        """Total number of blocks."""
        return sum(s.depth for s in self.stages)

    @property
    def stride(self) -> int:
        """Total downsampling factor of the features."""
        return self.stage_strides()[-1]

    def label(self) -> str:
        """A compact architecture label: per-stage block letters, widths, heads and MLP ratios, then aggregations, kernels
        and layer scales where they differ from the blocks' defaults, e.g. 'SS|SS|SMSMSMSM|M w64-128-256-512 h4-4-4/8-16 r4-4-4-2'."""
        text = f"{'|'.join(s.pattern for s in self.stages)} w{'-'.join(str(s.width) for s in self.stages)}"
        for letter, fields, always in _LABEL_PARTS:
            per_stage = [[_label_value(b, f) for b in s.blocks for f in fields if f in type(b).model_fields] for s in self.stages]
            if not any(per_stage):
                continue
            if not always and all(v == d for stage in per_stage for v, d in stage):
                continue
            text += f" {letter}" + "-".join("/".join(dict.fromkeys(v for v, _ in stage)) or "_" for stage in per_stage)
        return text

    def stage_strides(self) -> list[int]:
        """Downsampling factor of each stage's output relative to the input (e.g. 4, 8, 16, 32)."""
        out, s = [], self.stem.stride
        for st in self.stages:
            if st.downsample is not None:
                s *= st.downsample.stride
            out.append(s)
        return out

    def with_stem_stride(self, stride: Optional[int]) -> "NetSpec":
        """The same network with its stem at another stride (same parameters): a proxy that keeps feature-map sizes on small inputs.

        SMT's stem keeps its kernels and takes stride 2 in the first conv only when ``stride`` is 4;
        EfficientMod's stem conv takes the new stride with its padding unchanged. None: unchanged.
        """
        if stride is None or stride == self.stem.stride:
            return self
        if self.stem.kind == "smt" and stride not in (2, 4):
            raise ValueError(f"stem_stride: the SMT stem supports 2 or 4, not {stride}")
        if stride < 1:
            raise ValueError(f"stem_stride: {stride} must be at least 1")
        return self.model_copy(update={"stem": self.stem.model_copy(update={"stride": stride})})

    def with_width_mult(self, mult: Optional[float]) -> "NetSpec":
        """The same network with every stage width scaled by ``mult`` (a proxy knob), every block kept valid.

        Each new width is the width nearest to ``width * mult`` (the smaller one on a tie) that every
        block of the stage accepts (its own ``check``), so only the blocks that need divisibility (an
        even MHMC split, attention heads) constrain it; depth, kinds, kernels, ratios and feature-map
        sizes are unchanged. None or 1: unchanged.
        """
        if mult is None or mult == 1:
            return self
        if not 0 < mult <= 4:
            raise ValueError(f"width_mult: {mult} must be in (0, 4]")
        data = self.model_dump()
        for stage, spec in zip(data["stages"], self.stages):
            stage["width"] = _nearest_valid_width(spec.blocks, stage["width"] * mult)
        return type(self).model_validate(data)

    def drop_path_rates(self) -> list[list[float]]:
        """Per-block drop-path rates: linear from 0 to drop_path_rate over all blocks, or uniform."""
        n = self.depth
        if self.drop_path_schedule == "uniform" or n == 1:
            flat = [self.drop_path_rate if self.drop_path_schedule == "uniform" else 0.0] * n
        else:
            flat = [self.drop_path_rate * i / (n - 1) for i in range(n)]
        out, k = [], 0
        for s in self.stages:
            out.append(flat[k:k + s.depth])
            k += s.depth
        return out


# label parts: letter, the block fields it shows, shown always (else only where some block differs from its default)
_LABEL_PARTS = (("h", ("heads",), True), ("r", ("mlp_ratio",), True), ("a", ("aggregation",), False),
                ("k", ("kernel_size", "kernel_sizes"), False), ("ls", ("layer_scale",), False))


def _label_value(block: Any, field: str) -> tuple[str, str]:
    """A block field rendered for the label ('4', '2.5', 'ibn', '3.5.7'), and its default rendered the same way."""
    def render(v: Any) -> str:
        if isinstance(v, (tuple, list)):
            return ".".join(render(x) for x in v)
        return f"{v:g}" if isinstance(v, float) else "off" if v is None else str(v)

    cls = type(block)
    default = cls.derived(block.model_dump()).get(field, cls.model_fields[field].default)
    return render(getattr(block, field)), render(default)


def _nearest_valid_width(blocks, target: float) -> int:
    """The width nearest to ``target`` that all ``blocks`` accept (ties go to the smaller width)."""
    limit = 2 * math.ceil(target) + max((getattr(b, "heads", 1) for b in blocks), default=1)
    for width in sorted(range(1, limit + 1), key=lambda w: (abs(w - target), w)):
        if all(b.check(width) is None for b in blocks):
            return width
    raise ValueError(f"width_mult: no width near {target:g} suits the stage's blocks (use a larger width_mult)")
