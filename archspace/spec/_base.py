"""Shared pydantic base and field types of the spec tree."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


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


PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, BeforeValidator(_to_float), Field(gt=0)]
NonNegFloat = Annotated[float, BeforeValidator(_to_float), Field(ge=0)]
Eps = Annotated[float, BeforeValidator(_to_float), Field(gt=0, lt=1)]
IntTuple = Annotated[tuple[int, ...], BeforeValidator(_to_tuple)]
