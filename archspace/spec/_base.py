"""Shared pydantic base and field types of the spec tree."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema


def _to_tuple(value: Any) -> Any:
    """Accept a YAML/JSON list where the spec stores an immutable tuple."""
    return tuple(value) if isinstance(value, list) else value


def _to_float(value: Any) -> Any:
    """Accept an int where a float is expected (YAML writes 4 for 4.0); refuse bools and strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class Spec(BaseModel):
    """Base of every spec model: strict, frozen, unknown keys rejected."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    @classmethod
    def derived(cls, fields: dict) -> dict:
        """Fields a spec computes from its other ``fields`` when they are left out (none by default)."""
        return {}


MAX_INT = 65536  # widths, heads, kernels, ratios: every integer field of a spec stays below this
PosInt = Annotated[int, Field(gt=0, le=MAX_INT)]
BigInt = Annotated[int, Field(gt=0, le=10**15)]  # counts of parameters, trials: large but finite
PosFloat = Annotated[float, BeforeValidator(_to_float), Field(gt=0, allow_inf_nan=False)]
Ratio = Annotated[float, BeforeValidator(_to_float), Field(gt=0, le=64, allow_inf_nan=False)]
NonNegFloat = Annotated[float, BeforeValidator(_to_float), Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, BeforeValidator(_to_float), Field(ge=0, lt=1, allow_inf_nan=False)]  # dropout rates
Eps = Annotated[float, BeforeValidator(_to_float), Field(gt=0, lt=1)]
IntTuple = Annotated[tuple[int, ...], BeforeValidator(_to_tuple)]


def odd_kernels(field: str, sizes: tuple[int, ...]) -> None:
    """Refuse even or non-positive kernel sizes, naming the field."""
    for k in sizes:
        if k <= 0 or k % 2 == 0:
            raise ValueError(f"{field}: kernel size {k} must be odd and positive (use 3, 5, 7, ...)")


# pydantic writes a constraint behind a BeforeValidator under its own name (gt, min_length, ...); JSON Schema's names:
_KEYWORDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}
_ARRAY_KEYWORDS = {"minLength": "minItems", "maxLength": "maxItems"}


class _StandardJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema with every constraint under its JSON Schema keyword, so validators and editors apply it."""

    def generate(self, schema: Any, mode: Any = "validation") -> dict:
        return _standard_keywords(super().generate(schema, mode))


def _standard_keywords(node: Any) -> Any:
    """The schema with pydantic's constraint names renamed to JSON Schema keywords, recursively."""
    if isinstance(node, list):
        return [_standard_keywords(v) for v in node]
    if not isinstance(node, dict):
        return node
    array = node.get("type") == "array"
    out = {}
    for key, value in node.items():
        if key in ("properties", "$defs", "patternProperties"):
            out[key] = {k: _standard_keywords(v) for k, v in value.items()}
            continue
        key = _KEYWORDS.get(key, _ARRAY_KEYWORDS.get(key, key) if array else key)
        out[key] = _standard_keywords(value)
    return out


def json_schema(model: type[BaseModel]) -> dict:
    """The JSON Schema of a spec, space or ablation file: what loading it accepts, for editors and validators."""
    return model.model_json_schema(schema_generator=_StandardJsonSchema)
