"""Read infra/bicep through pycep-parser and answer questions about the tree.

pycep parses Bicep's syntax only: an identifier and a string literal both come back as a plain
string, so `resolve` looks a bare string up among the file's variables and parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = REPO_ROOT / "infra" / "bicep"
Tree = dict[str, Any]


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


@cache
def parse(path: Path) -> Tree:
    tree = BicepParser().parse(file_path=path)
    return dict(tree)


def tree_of(relative: str) -> Tree:
    return parse(BICEP_DIR / relative)


def walk(value: Any) -> Iterator[Any]:
    """Every node (dicts, lists, scalars) under value, value included."""
    yield value
    if isinstance(value, dict):
        for child in value.values():
            yield from walk(child)
    elif isinstance(value, list):
        for child in value:
            yield from walk(child)


def function_calls(value: Any) -> Iterator[dict[str, Any]]:
    """Every `{"function": {"type": ..., "parameters": ...}}` node under value."""
    for node in walk(value):
        if isinstance(node, dict) and isinstance(node.get("function"), dict):
            yield node["function"]


def strings(value: Any) -> Iterator[str]:
    for node in walk(value):
        if isinstance(node, str):
            yield node


def resources(tree: Tree, type_: str, *, existing: bool = False) -> dict[str, Any]:
    return {
        name: resource
        for name, resource in tree.get("resources", {}).items()
        if resource["type"] == type_ and resource["existing"] is existing
    }


def body(resource_or_module: dict[str, Any]) -> dict[str, Any]:
    """The resource's own properties, unwrapped from a loop or an `if` condition."""
    config: dict[str, Any] = resource_or_module["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def condition(resource_or_module: dict[str, Any]) -> Any:
    return resource_or_module["config"].get("condition")


def loop(resource_or_module: dict[str, Any]) -> dict[str, Any] | None:
    loop_type: dict[str, Any] | None = resource_or_module["config"].get("loop_type")
    return loop_type


def resolve(tree: Tree, value: Any) -> Any:
    """A bare identifier's variable value (or parameter default); anything else unchanged."""
    if isinstance(value, str):
        if value in tree.get("variables", {}):
            return tree["variables"][value]["value"]
        if value in tree.get("parameters", {}):
            return tree["parameters"][value]["default"]
    return value


def accessor(value: Any) -> list[str]:
    """`a.b.c` as ["a", "b", "c"] (pycep nests property accessors right-recursively)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and "operator" in value and value["operator"]["type"] == "property_accessor":
        operands = value["operator"]["operands"]
        return accessor(operands["operand_1"]) + accessor(operands["operand_2"])
    if isinstance(value, dict) and "function" in value:
        return [f"{value['function']['type']}()"]
    raise AssertionError(f"not a property access: {value!r}")


def description(declaration: dict[str, Any]) -> str | None:
    for decorator in declaration.get("decorators", []):
        if decorator["type"] == "description":
            text: str = decorator["argument"]
            return text
    return None
