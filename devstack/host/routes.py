"""ASP.NET Core route templates as Functions' HTTP triggers use them: {id}, {id:guid}, {id?}, {*rest}.

Literal segments match case-insensitively; more specific templates win (literal before
constrained parameter before parameter before optional before catch-all), as in ASP.NET routing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

_PARAMETER = re.compile(r"\{([^{}]+)\}")
_CONSTRAINT = re.compile(r"^(\w+)(?:\((.*)\))?$")

Check = Callable[[str], bool]


def _decode(segment: str) -> str:
    """A path segment's value as ASP.NET Core's routing gives it: percent-decoded, except an encoded
    slash, which stays %2F (Kestrel never decodes it: a value cannot add a path segment)."""
    return "%2F".join(unquote(part) for part in re.split("%2[fF]", segment))


class RouteTemplateError(ValueError):
    pass


def _is_number(kind: type) -> Check:
    def check(value: str) -> bool:
        try:
            kind(value)
        except ValueError:
            return False
        return True

    return check


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _constraint(text: str) -> Check:
    match = _CONSTRAINT.match(text)
    if not match:
        raise RouteTemplateError(f"bad route constraint {text!r}")
    name, argument = match.group(1).lower(), match.group(2)
    simple: dict[str, Check] = {
        "int": _is_number(int),
        "long": _is_number(int),
        "double": _is_number(float),
        "float": _is_number(float),
        "decimal": _is_number(float),
        "bool": lambda v: v.lower() in {"true", "false"},
        "guid": _is_guid,
        "datetime": _is_datetime,
        "alpha": lambda v: v.isascii() and v.isalpha(),
    }
    if name in simple:
        return simple[name]
    if argument is None:
        raise RouteTemplateError(f"unknown route constraint {text!r}")
    if name == "regex":
        pattern = re.compile(argument, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    bounds = [int(part) for part in argument.split(",")]
    checks: dict[str, Check] = {
        "minlength": lambda v: len(v) >= bounds[0],
        "maxlength": lambda v: len(v) <= bounds[0],
        "length": lambda v: bounds[0] <= len(v) <= bounds[-1],
        "min": lambda v: _is_number(int)(v) and int(v) >= bounds[0],
        "max": lambda v: _is_number(int)(v) and int(v) <= bounds[0],
        "range": lambda v: _is_number(int)(v) and bounds[0] <= int(v) <= bounds[-1],
    }
    if name not in checks:
        raise RouteTemplateError(f"unknown route constraint {text!r}")
    return checks[name]


@dataclass(frozen=True)
class _Parameter:
    name: str
    checks: tuple[Check, ...]
    optional: bool
    catch_all: bool
    default: str | None


@dataclass(frozen=True)
class _Segment:
    pattern: re.Pattern[str]
    parameters: tuple[_Parameter, ...]
    rank: int  # 0 literal, 1 constrained, 2 parameter, 3 optional, 4 catch-all

    @property
    def optional(self) -> bool:
        only = self.parameters[0] if len(self.parameters) == 1 else None
        return only is not None and (only.optional or only.catch_all or only.default is not None)


def _parse_parameter(text: str) -> _Parameter:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    default = None
    if "=" in text:
        text, default = text.split("=", 1)
    optional = text.endswith("?")
    text = text.rstrip("?")
    name, *constraints = text.split(":")
    if not name.isidentifier():
        raise RouteTemplateError(f"bad route parameter name {name!r}")
    return _Parameter(name, tuple(_constraint(c) for c in constraints), optional, catch_all, default)


def _parse_segment(text: str) -> _Segment:
    parameters: list[_Parameter] = []
    regex = ""
    position = 0
    for match in _PARAMETER.finditer(text):
        regex += re.escape(text[position : match.start()])
        parameter = _parse_parameter(match.group(1))
        parameters.append(parameter)
        regex += f"(?P<{parameter.name}>.+?)" if parameter.catch_all is False else f"(?P<{parameter.name}>.*)"
        position = match.end()
    regex += re.escape(text[position:])
    if not parameters:
        rank = 0
    else:
        first = parameters[0]
        rank = 4 if first.catch_all else 3 if first.optional else 1 if first.checks else 2
    return _Segment(re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL), tuple(parameters), rank)


class RouteTemplate:
    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.segments = [_parse_segment(s) for s in self.template.split("/")] if self.template else []
        for segment in self.segments[:-1]:
            if any(p.catch_all for p in segment.parameters):
                raise RouteTemplateError(f"catch-all must be the last segment: {template!r}")

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(segment.rank for segment in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for a path (without the route prefix), or None when it does not match."""
        parts = [_decode(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.parameters and segment.parameters[0].catch_all:
                rest = "/".join(parts[index:])
                if not self._bind(segment, rest, values):
                    return None
                return values
            if index >= len(parts):
                if not segment.optional:
                    return None
                parameter = segment.parameters[0]
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                continue
            if not self._bind(segment, parts[index], values):
                return None
        return values if len(parts) <= len(self.segments) else None

    @staticmethod
    def _bind(segment: _Segment, text: str, values: dict[str, str]) -> bool:
        match = segment.pattern.match(text)
        if match is None:
            return False
        for parameter in segment.parameters:
            value = match.group(parameter.name)
            if value == "" and parameter.catch_all:
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                continue
            if not all(check(value) for check in parameter.checks):
                return False
            values[parameter.name] = value
        return True
