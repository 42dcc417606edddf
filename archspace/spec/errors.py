"""One-line errors for bad specs: the field path, what is wrong, how to fix it."""
from __future__ import annotations

import re

from pydantic import ValidationError


class SpecError(ValueError):
    """A spec, space or file that archspace refuses; the message is one line naming the field."""


def loc_to_path(loc: tuple) -> str:
    """Render a pydantic location tuple as ``stages[2].blocks[0].heads``."""
    from ..blocks import REGISTRY

    tags = {*REGISTRY, "smt", "function-before", "function-after"}
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            # discriminated unions add the tag as a location element; drop it
            if part in tags and out:
                continue
            if part.startswith("function-") or part.startswith("tagged-union"):
                continue
            out += ("." if out else "") + part
    return out


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return " ".join(msg.split())


def first_error(exc: ValidationError, prefix: str = "") -> SpecError:
    """Turn the first pydantic error into a one-line SpecError naming the field path."""
    err = exc.errors(include_url=False)[0]
    path = loc_to_path(tuple(err.get("loc", ())))
    msg = _clean(err.get("msg", str(exc)))
    typ = err.get("type", "")
    if typ == "extra_forbidden":
        msg = "unknown field (remove it or check the spelling)"
    elif typ == "missing":
        msg = "required field is missing"
    elif typ == "union_tag_invalid":
        ctx = err.get("ctx", {})
        msg = f"unknown block kind {ctx.get('tag')!r} (use one of {ctx.get('expected_tags')})"
    elif typ == "literal_error":
        msg = f"{err.get('input')!r} is not allowed; {msg[0].lower() + msg[1:]}"
    elif "input" in err and not isinstance(err["input"], (dict, list, tuple)) and typ != "value_error":
        msg = f"{err['input']!r} is not valid; {msg[0].lower() + msg[1:]}"
    full = ".".join(p for p in (prefix, path) if p)
    # a validator may already name a sub-field ("blocks[0].heads: ..."): join it to the path
    if msg[:1] and not msg.startswith(" ") and ": " in msg.split(" ")[0] + " ":
        head, _, rest = msg.partition(": ")
        if head.replace("[", "").replace("]", "").replace(".", "").replace("_", "").isalnum():
            sep = "" if head.startswith("[") else "."
            full = f"{full}{sep}{head}" if full else head
            msg = rest
    return SpecError(f"{full}: {msg}" if full else msg)


def one_line(exc: BaseException) -> str:
    """Any user error as the one line the CLI prints: a pydantic ValidationError as 'field.path: what is wrong (fix)'."""
    if isinstance(exc, ValidationError):
        msg = str(first_error(exc))
        more = exc.error_count() - 1
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''}; fix this one first)"
    else:
        msg = str(exc)
    msg = re.sub(r"\s*For further information visit \S+", "", msg)
    return " ".join(msg.split())
