"""The OpenAPI document's request shapes follow the connector catalogue, profile by profile.

RegistrationRequest is one variant per group of profiles (functions/openapi.json); a profile
added, or a credential type or option changed in functions/profiles/connectors/, must show in the
document, or clients (and the schemathesis test) are told something the API does not do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.core.catalogue.profiles import COMMON_OPTIONS, Profile
from functions.profiles import load_catalogue

DOCUMENT = json.loads(
    (Path(__file__).resolve().parents[2] / "functions" / "openapi.json").read_text(encoding="utf-8")
)
ALL_VARIANTS: list[dict[str, Any]] = DOCUMENT["components"]["schemas"]["RegistrationRequest"]["oneOf"]
# A new app: profile given, no adopt. An adoption (docs/adoption.md): the same shapes with adopt
# required, plus one without a profile.
VARIANTS = [v for v in ALL_VARIANTS if "adopt" not in v["properties"]]
ADOPTING = [v for v in ALL_VARIANTS if "adopt" in v["properties"] and "profile" in v["properties"]]
ADOPTING_BARE = [v for v in ALL_VARIANTS if "adopt" in v["properties"] and "profile" not in v["properties"]]
ADOPTION_OPTIONS = {"retireExisting", "reconcile"}  # functions.core.adoption.asking.ADOPTION_OPTIONS
CATALOGUE = load_catalogue()


def _profiles_of(variant: dict[str, Any]) -> set[str]:
    schema = variant["properties"]["profile"]
    return set(schema["enum"]) if "enum" in schema else {schema["const"]}


def _credential_types(variant: dict[str, Any]) -> set[str]:
    schema = variant["properties"]["credential"]
    types: set[str] = set()
    for shape in schema.get("oneOf", [schema]):
        kind = shape["properties"]["type"]
        types |= set(kind["enum"]) if "enum" in kind else {kind["const"]}
    return types


def _variant_for(profile: Profile, variants: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    matches = [v for v in (VARIANTS if variants is None else variants) if profile.id in _profiles_of(v)]
    assert len(matches) == 1, f"{profile.id} is in {len(matches)} RegistrationRequest variants"
    return matches[0]


def test_every_variant_names_only_real_profiles() -> None:
    named = set().union(*(_profiles_of(v) for v in VARIANTS))
    assert named == set(CATALOGUE.ids())


@pytest.mark.parametrize("profile_id", CATALOGUE.ids())
def test_the_variant_takes_the_profiles_credential_types_options_and_permissions(profile_id: str) -> None:
    profile = CATALOGUE.get(profile_id)
    assert profile is not None
    variant = _variant_for(profile)
    assert _credential_types(variant) == {kind.value for kind in profile.credential_types}
    documented_options = set(variant["properties"]["options"]["properties"])
    assert documented_options == {option.name for option in profile.options} | set(COMMON_OPTIONS)
    assert ("permissions" in variant["properties"]) is profile.custom
    assert ("permissions" in variant.get("required", [])) is profile.custom


def test_every_variant_has_its_adoption_twin_and_one_takes_no_profile() -> None:
    from functions.core.adoption.asking import ADOPTION_OPTIONS as TAKEN

    assert set(TAKEN) == ADOPTION_OPTIONS
    assert len(ADOPTING) == len(VARIANTS) and len(ADOPTING_BARE) == 1
    for profile in CATALOGUE:
        new, adopting = _variant_for(profile), _variant_for(profile, ADOPTING)
        assert set(adopting["required"]) == {*new["required"], "adopt"}
        assert set(adopting["properties"]) == {*new["properties"], "adopt"}
        assert set(adopting["properties"]["options"]["properties"]) == {
            *new["properties"]["options"]["properties"],
            *ADOPTION_OPTIONS,
        }
        assert adopting["properties"]["credential"] == new["properties"]["credential"]
    bare = ADOPTING_BARE[0]
    assert set(bare["required"]) == {"requestId", "adopt"} and bare["additionalProperties"] is False
    assert not {"profile", "credential", "permissions"} & set(bare["properties"])
    assert set(bare["properties"]["options"]["properties"]) == ADOPTION_OPTIONS
