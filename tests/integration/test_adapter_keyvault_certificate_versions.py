"""functions/adapters/keyvault.py: a retired certificate's version is disabled, its backing secret too."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from functions.core.record.errors import NotFound
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters


def test_disabling_a_certificate_version_leaves_the_latest_and_is_idempotent(tenant: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant) as a:
            name = f"cert-{uuid.uuid4().hex[:12]}"
            old = await a.vault.create_certificate(name, subject="CN=old", validity_months=1, tags={})
            new = await a.vault.create_certificate(name, subject="CN=new", validity_months=1, tags={})

            await a.vault.update_certificate_version(name, old.version, enabled=False)
            await a.vault.update_certificate_version(name, old.version, enabled=False)

            properties = {
                p.version: p.enabled
                async for p in a.vault.certificates.list_properties_of_certificate_versions(name)
            }
            assert properties == {old.version: False, new.version: True}
            backing = {v.version: v.enabled for v in await a.vault.secret_versions(name)}
            assert backing[old.version] is False and backing[new.version] is True
            assert (await a.vault.get_certificate(name)).version == new.version
            with pytest.raises(NotFound):
                await a.vault.update_certificate_version(name, uuid.uuid4().hex, enabled=False)
            await a.vault.delete_certificate(name)

    asyncio.run(main())
