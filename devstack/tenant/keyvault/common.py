"""Request helpers shared by the secret and certificate handlers: bodies, validation, paging."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aiohttp import web

from .errors import bad_parameter
from .model import Attributes, now_s

NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_TAGS = 15
MAX_TAG_LENGTH = 512
MAX_CONTENT_TYPE = 255
MAX_PAGE = 25
MAX_UNIX_S = 253402300799  # 9999-12-31T23:59:59Z


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise bad_parameter(f"The request URI contains an invalid name: {name[:200]}")


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        raise bad_parameter("The request body is empty.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_parameter("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return body


def parse_tags(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise bad_parameter("Tags must be a JSON object of string values.")
    if len(raw) > MAX_TAGS:
        raise bad_parameter(f"The number of tags ({len(raw)}) exceeds the maximum of {MAX_TAGS}.")
    for key, value in raw.items():
        if not key or len(key) > MAX_TAG_LENGTH or len(value) > MAX_TAG_LENGTH:
            raise bad_parameter(f"Tag names and values must be 1-{MAX_TAG_LENGTH} characters long.")
    return dict(raw)


def parse_content_type(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise bad_parameter("contentType must be a string.")
    if len(raw) > MAX_CONTENT_TYPE:
        raise bad_parameter(f"contentType exceeds the maximum length of {MAX_CONTENT_TYPE} characters.")
    return raw


def _unix(raw: Any, field: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= MAX_UNIX_S:
        raise bad_parameter(f"Invalid value for attribute '{field}': expected Unix seconds.")
    return int(raw)


def parse_attributes(raw: Any) -> dict[str, Any]:
    """The fields present in an attributes object: enabled, nbf, exp (read-only ones ignored)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_parameter("attributes must be a JSON object.")
    out: dict[str, Any] = {}
    if "enabled" in raw and raw["enabled"] is not None:
        if not isinstance(raw["enabled"], bool):
            raise bad_parameter("Invalid value for attribute 'enabled': expected a boolean.")
        out["enabled"] = raw["enabled"]
    for field in ("nbf", "exp"):
        if field in raw:
            out[field] = _unix(raw[field], field)
    return out


def new_attributes(fields: dict[str, Any]) -> Attributes:
    attributes = Attributes()
    apply_attributes(attributes, fields)
    return attributes


def apply_attributes(attributes: Attributes, fields: dict[str, Any]) -> None:
    enabled = fields.get("enabled", attributes.enabled)
    nbf = fields.get("nbf", attributes.nbf) if "nbf" in fields else attributes.nbf
    exp = fields.get("exp", attributes.exp) if "exp" in fields else attributes.exp
    if nbf is not None and exp is not None and exp < nbf:
        raise bad_parameter("The expiry time (exp) must be later than the not-before time (nbf).")
    attributes.enabled = enabled
    attributes.nbf = nbf
    attributes.exp = exp
    attributes.updated = now_s()


def page(request: web.Request, vault_url: str, items: list[dict[str, Any]]) -> web.Response:
    """One page of ``items`` with Key Vault's {"value", "nextLink"} and $skiptoken/maxresults."""
    raw_max = request.query.get("maxresults")
    size = MAX_PAGE
    if raw_max is not None:
        try:
            size = int(raw_max)
        except ValueError:
            raise bad_parameter("invalid maxresults") from None
        if not 1 <= size <= MAX_PAGE:
            raise bad_parameter(f"invalid maxresults: must be between 1 and {MAX_PAGE}")
    start = 0
    token = request.query.get("$skiptoken")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise bad_parameter("invalid $skiptoken") from None
        if start < 0:
            raise bad_parameter("invalid $skiptoken")
    chunk = items[start : start + size]
    next_link = None
    if start + size < len(items):
        skip = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        version = request.query.get("api-version", "")
        next_link = f"{vault_url}{request.path}?api-version={version}&$skiptoken={skip}&maxresults={size}"
    return web.json_response({"value": chunk, "nextLink": next_link})
