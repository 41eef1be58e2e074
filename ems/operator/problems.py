"""A request body's validation errors in the operator's terms, one line per field.

pydantic reports a union field once per member it tried ("value.bool: Input should be a
valid boolean, value.float: Input should be a valid number"); an operator wants to read
"value: expected a number, true/false or null (got 'abc')".
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# the union members pydantic names in an error's location: not fields of the request
_MEMBERS = {"bool": "true/false", "float": "a number", "int": "a whole number", "str": "text", "none": "null"}
_MESSAGES = {
    "missing": "missing",
    "extra_forbidden": "not a field of this action",
    "finite_number": "must be a finite number",
    "bool_type": "expected true/false", "bool_parsing": "expected true/false",
    "float_type": "expected a number", "float_parsing": "expected a number",
    "int_type": "expected a whole number", "int_parsing": "expected a whole number",
    "string_type": "expected text", "none_required": "expected null",
    "model_type": "expected a JSON object", "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def problems(exc: ValidationError, tagged: bool = False) -> list[str]:
    """`tagged`: the body is a union told apart by a tag field (the force mode's `mode`),
    which pydantic puts first in each error's location."""
    by_field: dict[str, list[ErrorDetails]] = {}
    out = []
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx") or {}
        if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
            tag = str(ctx.get("discriminator", "tag")).strip("'")
            if err["type"] == "union_tag_invalid":
                out.append(f"{tag}: expected one of {ctx.get('expected_tags')} (got {_short(ctx.get('tag'))})")
            else:
                out.append(f"{tag}: missing")
            continue
        loc = err["loc"][1:] if tagged and len(err["loc"]) > 1 else err["loc"]
        field = ".".join(str(p) for p in loc if str(p) not in _MEMBERS) or "body"
        by_field.setdefault(field, []).append(err)
    for field, errs in by_field.items():
        members = [str(e["loc"][-1]) for e in errs if e["loc"] and str(e["loc"][-1]) in _MEMBERS]
        got = f" (got {_short(errs[0]['input'])})" if "input" in errs[0] and errs[0]["type"] != "missing" else ""
        if len(members) > 1:  # one error per union member: say what would do
            names = [_MEMBERS[m] for m in members]
            out.append(f"{field}: expected {', '.join(names[:-1])} or {names[-1]}{got}")
            continue
        for e in errs:
            msg = _MESSAGES.get(e["type"], e["msg"].removeprefix("Value error, "))
            out.append(f"{field}: {msg}{got if e['type'] != 'missing' else ''}")
    return out
