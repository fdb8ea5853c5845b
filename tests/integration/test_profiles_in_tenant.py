"""Every profile's permissions resolve through the real Graph adapter (msgraph-sdk over HTTPS) in the
local tenant, to the same ids Entra publishes (functions/profiles/resources/*.json)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from functions.adapters.graph import GraphDirectory
from functions.adapters.identity import IdentityConfig, RegistrarIdentity
from functions.core.catalogue.permissions import resolve
from functions.core.catalogue.policy import Policy
from functions.core.intake.requests import ValidatedRequest, validate_request
from functions.core.record.errors import ValidationFailed
from functions.core.record.models import SecretValue
from functions.profiles import load_catalogue, load_resource_catalogs

T = TypeVar("T")


def in_tenant(tenant: Any, work: Callable[[GraphDirectory], Awaitable[T]]) -> T:
    async def run() -> T:
        identity = RegistrarIdentity(
            IdentityConfig(
                authority_host=tenant.authority,
                home_tenant_id=tenant.tenant_id,
                client_id=tenant.client_id,
                client_secret=SecretValue(tenant.client_secret),
            )
        )
        directory = GraphDirectory(identity, tenant.graph_url)
        try:
            return await asyncio.wait_for(work(directory), timeout=60)
        finally:
            await directory.close()
            await identity.close()

    return asyncio.run(run())


def every_variant() -> list[tuple[str, dict[str, Any]]]:
    variants: list[tuple[str, dict[str, Any]]] = []
    for profile in load_catalogue():
        if profile.custom:
            continue
        variants.append((profile.id, {}))
        for option in profile.options:
            if option.type == "boolean":
                variants.append((profile.id, {option.name: True}))
            if option.grants is not None:
                variants.append((profile.id, {option.name: list(option.allowed)}))
    return variants


def test_every_profile_resolves_in_the_tenant_to_the_published_ids(tenant: Any) -> None:
    policy = Policy()
    published = list(load_resource_catalogs().values())
    variants = every_variant()

    async def work(directory: GraphDirectory) -> list[ValidatedRequest]:
        return [
            await validate_request(
                {"requestId": f"IT-{i}", "profile": pid, "options": options},
                directory=directory,
                home_tenant_id=tenant.tenant_id,
                catalogue=load_catalogue(),
                policy=policy,
            )
            for i, (pid, options) in enumerate(variants)
        ]

    results = in_tenant(tenant, work)
    for (pid, options), validated in zip(variants, results, strict=True):
        profile = load_catalogue().get(pid)
        assert profile is not None
        expected = resolve(profile.permission_refs(options), published)
        assert list(validated.permissions) == expected, (pid, options)
        assert set(validated.service_principals) == {p.resource_app_id for p in expected}
        assert all(validated.service_principals.values())


def test_seed_typos_get_suggestions_through_the_tenant(tenant: Any) -> None:
    body = {
        "requestId": "IT-typos",
        "profile": "custom",
        "permissions": [
            {"resource": "Microsoft Graph", "type": "application", "name": "Groups.Read.All"},
            {"resource": "Microsoft Graph", "type": "application", "name": "Group.ReadWrite.Alls"},
            {"resource": "Microsoft Graph", "type": "application", "name": "Directory. Read.All"},
            {"resource": "Office 365 SharePoint Online", "type": "application", "name": "Sites.ReadAll"},
            {"resource": "Contoso Line of Business API", "type": "application", "name": "Things.Read"},
        ],
    }

    async def work(directory: GraphDirectory) -> None:
        await validate_request(
            body,
            directory=directory,
            home_tenant_id=tenant.tenant_id,
            catalogue=load_catalogue(),
            policy=Policy(),
        )

    with pytest.raises(ValidationFailed) as failure:
        in_tenant(tenant, work)
    suggestions = [p.suggestion or "" for p in failure.value.problems]
    assert suggestions[0].startswith("did you mean Group.Read.All")
    assert suggestions[1].startswith("did you mean Group.ReadWrite.All")
    assert suggestions[2] == "did you mean Directory.Read.All?"
    assert suggestions[3] == "did you mean Sites.Read.All?"
    assert "no service principal" in failure.value.problems[4].reason
