"""OData query options as Graph's directory honours them: $filter (a subset), $select, $top, $count.

$filter compiles to a predicate over an object's Graph properties. String comparisons are
case-insensitive, as in the directory. Filtering on credentials is refused, as Graph does.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from devstack.tenant.graph.errors import GraphError, bad_request, unsupported_query

Predicate = Callable[[Mapping[str, Any]], bool]

DEFAULT_PAGE = 100
MAX_PAGE = 999
MAX_FILTER_LENGTH = 4096
MAX_FILTER_NESTING = 64  # bounds the recursive descent: a hostile filter gets a 400, not a 500
NOT_FILTERABLE = {"passwordCredentials", "keyCredentials", "federatedIdentityCredentials"}

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<punct>[(),:/])|(?P<word>[A-Za-z_$][A-Za-z0-9_.\-]*)|(?P<num>-?\d+))"
)


@dataclass(frozen=True)
class Filter:
    predicate: Predicate
    index: tuple[str, str] | None  # (property, value) when the whole filter is one "eq" on it


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _invalid_filter()
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _invalid_filter() -> GraphError:
    return bad_request("Invalid filter clause: syntax error in the $filter expression.", code="BadRequest")


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, str], type_name: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.fields = fields  # property -> "str" | "bool" | "coll"
        self.type_name = type_name
        self.simple: tuple[str, str] | None = None

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1].lower() != value):
            raise _invalid_filter()
        self.pos += 1
        return token

    def parse(self) -> Filter:
        predicate = self.expr()
        if self.pos != len(self.tokens):
            raise _invalid_filter()
        return Filter(predicate, self.simple if len(self.tokens) == 3 else None)

    def expr(self) -> Predicate:
        left = self.conjunction()
        while (token := self.peek()) is not None and token[1].lower() == "or":
            self.take()
            left = _or(left, self.conjunction())
        return left

    def conjunction(self) -> Predicate:
        left = self.term()
        while (token := self.peek()) is not None and token[1].lower() == "and":
            self.take()
            left = _and(left, self.term())
        return left

    def term(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise _invalid_filter()
        if token[1] == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        if token[1].lower() == "startswith":
            self.take()
            self.take("(")
            name = self.field(("str",))
            self.take(",")
            prefix = _norm(self.literal())
            self.take(")")
            return lambda props: isinstance(v := props.get(name), str) and v.lower().startswith(prefix)
        name = self.property_name()
        if (nxt := self.peek()) is not None and nxt[1] == "/":
            return self.any_clause(name)
        kind = self.check(name, ("str", "bool"))
        operator = self.take()[1].lower()
        if operator == "eq":
            value = self.literal()
            if kind == "str" and isinstance(value, str):
                self.simple = (name, value)
            wanted = _norm(value)
            return lambda props: _norm(props.get(name)) == wanted
        if operator == "in":
            self.take("(")
            values = {_norm(self.literal())}
            while self.peek() is not None and self.peek() == ("punct", ","):
                self.take()
                values.add(_norm(self.literal()))
            self.take(")")
            return lambda props: _norm(props.get(name)) in values
        raise unsupported_query(f"Unsupported query operator '{operator}'.")

    def any_clause(self, name: str) -> Predicate:
        self.check(name, ("coll",))
        self.take("/")
        self.take("any")
        self.take("(")
        variable = self.take()[1]
        self.take(":")
        if self.take()[1] != variable:
            raise _invalid_filter()
        self.take("eq")
        wanted = _norm(self.literal())
        self.take(")")
        return lambda props: any(_norm(item) == wanted for item in props.get(name) or [])

    def property_name(self) -> str:
        kind, value = self.take()
        if kind != "word":
            raise _invalid_filter()
        return value

    def field(self, kinds: tuple[str, ...]) -> str:
        name = self.property_name()
        self.check(name, kinds)
        return name

    def check(self, name: str, kinds: tuple[str, ...]) -> str:
        kind = self.fields.get(name)
        if kind is None:
            if name in NOT_FILTERABLE:
                raise unsupported_query(
                    f"Unsupported or invalid query filter clause specified for property '{name}' "
                    f"of resource '{self.type_name[0].upper()}{self.type_name[1:]}'."
                )
            raise bad_request(
                f"Could not find a property named '{name}' on type 'microsoft.graph.{self.type_name}'.",
                code="BadRequest",
            )
        if kind not in kinds:
            raise unsupported_query(f"Unsupported query on property '{name}'.")
        return kind

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "word" and value.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value.lower()]
        if kind == "num":
            return int(value)
        raise _invalid_filter()


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda props: a(props) and b(props)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda props: a(props) or b(props)


def parse_filter(text: str | None, fields: Mapping[str, str], type_name: str) -> Filter | None:
    if text is None:
        return None
    if not text.strip():
        raise _invalid_filter()
    if len(text) > MAX_FILTER_LENGTH or text.count("(") > MAX_FILTER_NESTING:
        raise unsupported_query("The $filter expression is too long or too deeply nested.")
    return _Parser(text, fields, type_name).parse()


def parse_select(text: str | None, known: Mapping[str, Any] | set[str], type_name: str) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise bad_request("Invalid $select: empty list.", code="BadRequest")
    for name in names:
        if name not in known:
            raise bad_request(
                f"Parsing OData Select and Expand failed: Could not find a property named '{name}' "
                f"on type 'microsoft.graph.{type_name}'.",
                code="BadRequest",
            )
    return list(dict.fromkeys(names))


def parse_top(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise bad_request(
            f"Invalid page size specified: '{text}'. Must be between 1 and {MAX_PAGE} inclusive.",
            code="Request_UnsupportedQuery",
        )
    return int(text)


def encode_skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(f"devstack:{offset}".encode()).decode().rstrip("=")


def decode_skiptoken(token: str | None) -> int:
    if token is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, offset = text.partition(":")
        if prefix != "devstack" or not offset.isdigit():
            raise ValueError(text)
        return int(offset)
    except ValueError:
        raise bad_request("Specified skip token is invalid.", code="Request_BadRequest") from None


def wants_count(query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    value = query.get("$count")
    if value is None or value.lower() == "false":
        return False
    if value.lower() != "true":
        raise bad_request("Invalid value for $count.", code="BadRequest")
    if headers.get("ConsistencyLevel", "").lower() != "eventual":
        raise unsupported_query(
            "$count is supported only with the ConsistencyLevel header set to 'eventual' "
            "(advanced query capabilities)."
        )
    return True


# $expand on application and service principal lists: owners only (what Registrar's inventory reads),
# with an optional nested $select; Graph returns at most 20 expanded directory objects per object.
EXPAND_OWNERS = {"owners", "owners($select=id)"}
MAX_EXPANDED = 20


def wants_owners(query: Mapping[str, str]) -> bool:
    value = query.get("$expand")
    if value is None:
        return False
    if value.replace(" ", "") not in EXPAND_OWNERS:
        raise unsupported_query(f"Query option '$expand={value}' is not supported by this devstack tenant.")
    return True


KNOWN_QUERY_OPTIONS = {"$filter", "$select", "$top", "$count", "$skiptoken", "$orderby", "$expand", "$search"}


def reject_unknown_options(query: Mapping[str, str], *, expand_owners: bool = False) -> None:
    for name in query:
        if name.startswith("$") and name not in KNOWN_QUERY_OPTIONS:
            raise bad_request(f"Query option '{name}' is not allowed.", code="BadRequest")
    for name in ("$search", "$orderby") if expand_owners else ("$expand", "$search", "$orderby"):
        if name in query:
            raise unsupported_query(f"Query option '{name}' is not supported by this devstack tenant.")
