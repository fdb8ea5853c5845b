"""Microsoft's service principals in every local tenant, including tenants saved before a seed existed."""

from __future__ import annotations

from devstack.tenant.context import STORAGE_APP_ID, STORAGE_RESOURCE
from devstack.tenant.graph.directory import Directory, new_directory


def test_azure_storage_is_a_resource_of_every_tenant() -> None:
    directory, _, _ = new_directory("11111111-1111-1111-1111-111111111111")
    storage = directory.resource_for_scope(f"{STORAGE_RESOURCE}/.default")
    assert storage is not None and storage.app_id == STORAGE_APP_ID
    assert directory.resource_record(f"{STORAGE_RESOURCE}/.default").audience == STORAGE_RESOURCE


def test_a_tenant_saved_before_a_seed_existed_gains_it_when_loaded() -> None:
    directory, client_id, _ = new_directory("22222222-2222-2222-2222-222222222222")
    saved = directory.to_dict()
    saved["servicePrincipals"] = [sp for sp in saved["servicePrincipals"] if sp["seed"] != "azure-storage"]
    restored = Directory.from_dict(saved)
    assert restored.resource_for_scope(STORAGE_RESOURCE) is not None
    assert restored.application_by_app_id(client_id) is not None
    assert sorted(sp.seed for sp in restored.service_principals.values() if sp.seed) == sorted(
        sp.seed for sp in directory.service_principals.values() if sp.seed
    )
