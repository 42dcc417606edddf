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
Eps = Annotated[float, BeforeValidator(_to_float), Field(gt=0, lt=1)]
IntTuple = Annotated[tuple[int, ...], BeforeValidator(_to_tuple)]


def odd_kernels(field: str, sizes: tuple[int, ...]) -> None:
    """Refuse even or non-positive kernel sizes, naming the field."""
    for k in sizes:
        if k <= 0 or k % 2 == 0:
            raise ValueError(f"{field}: kernel size {k} must be odd and positive (use 3, 5, 7, ...)")
