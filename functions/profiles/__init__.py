"""The connector catalogue: one data file per profile under connectors/, read once from package data.

load_catalogue() parses every connectors/*.toml (tomllib) or *.json file and validates it with
functions.core.catalogue.profiles.profile_from_dict; a bad file raises ProfileError naming the file and the
field, so a broken catalogue stops the app at start instead of failing one registration later.
The resource permission catalogues (resources/*.json) are read by load_resource_catalogs().
"""

from __future__ import annotations

import json
import tomllib
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from functions.core.catalogue.permissions import catalog_from_json
from functions.core.catalogue.profile_schema import profile_from_dict
from functions.core.catalogue.profiles import Profile, ProfileCatalogue, ProfileError
from functions.core.record.models import ResourceCatalog

__all__ = [
    "ProfileError",
    "load_catalogue",
    "load_profile_file",
    "load_resource_catalogs",
    "resource_catalog_json",
]


def _parse_file(entry: Traversable) -> Any:
    text = entry.read_text(encoding="utf-8")
    try:
        if entry.name.endswith(".toml"):
            return tomllib.loads(text)
        return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"connectors/{entry.name}", "(file)", f"cannot parse: {exc}") from None


def load_profile_file(entry: Traversable) -> Profile:
    """Parse and validate one profile file (the id must match the file name)."""
    source = f"connectors/{entry.name}"
    data = _parse_file(entry)
    if not isinstance(data, dict):
        raise ProfileError(source, "(file)", "expected a table/object at the top level")
    profile = profile_from_dict(data, source=source)
    stem = entry.name.rsplit(".", 1)[0]
    if profile.id != stem:
        raise ProfileError(source, "id", f"{profile.id!r} does not match the file name {stem!r}")
    return profile


def load_catalogue_from(directory: Traversable) -> ProfileCatalogue:
    entries = sorted(
        (e for e in directory.iterdir() if e.is_file() and e.name.endswith((".toml", ".json"))),
        key=lambda e: e.name,
    )
    if not entries:
        raise ProfileError(str(directory), "(directory)", "no profile files")
    return ProfileCatalogue(load_profile_file(entry) for entry in entries)


@cache
def load_catalogue() -> ProfileCatalogue:
    """Every connector profile, loaded and validated once per process."""
    return load_catalogue_from(files(__name__) / "connectors")


@cache
def resource_catalog_json(file_name: str) -> dict[str, Any]:
    """One of resources/*.json as parsed JSON (e.g. to seed the local tenant)."""
    data: dict[str, Any] = json.loads((files(__name__) / "resources" / file_name).read_text(encoding="utf-8"))
    return data


def load_resource_catalogs() -> dict[str, ResourceCatalog]:
    """The published permission catalogues of Microsoft Graph, Exchange Online and SharePoint
    Online, by appId (service principal ids are tenant-specific and left empty)."""
    names = sorted(e.name for e in (files(__name__) / "resources").iterdir() if e.name.endswith(".json"))
    catalogs = (catalog_from_json(resource_catalog_json(name)) for name in names)
    return {catalog.app_id: catalog for catalog in catalogs}
