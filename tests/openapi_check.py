"""A small JSON Schema check (the subset functions/openapi.json uses): type, enum, required,
properties, additionalProperties false, items, allOf, $ref into components, pattern, maxLength."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

OPENAPI = Path(__file__).resolve().parents[1] / "functions" / "openapi.json"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def load_openapi() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return errors(value, target, root, path)
    found: list[str] = []
    for sub in schema.get("allOf", ()):
        found += errors(value, sub, root, path)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return [*found, f"{path}: {type(value).__name__} is not {'/'.join(kinds)}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{path}: does not match {schema['pattern']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{path}: longer than {schema['maxLength']}")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                found.append(f"{path}: missing {name}")
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                found += errors(item, properties[name], root, f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}: unexpected property {name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += errors(item, schema["items"], root, f"{path}[{index}]")
    return found


def response_errors(
    document: dict[str, Any], path: str, method: str, status: int, body: Any, *, content_type: str
) -> list[str]:
    """Check one real response against the document's declared response for it."""
    operation = document["paths"][path][method.lower()]
    declared = operation["responses"].get(str(status))
    if declared is None:
        return [f"{method} {path}: status {status} is not documented"]
    media = content_type.split(";", maxsplit=1)[0].strip()
    if media not in declared.get("content", {}):
        return [f"{method} {path} {status}: content type {media} is not documented"]
    return errors(body, declared["content"][media]["schema"], document)
