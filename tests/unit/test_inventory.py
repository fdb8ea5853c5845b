"""The inventory's core: profile matching, the first scan as lists, delta rounds, no secret kept."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from functions.adapters.graph_inventory import summary
from functions.core.inventory.marking import reflect
from functions.core.inventory.matching import app_keys
from functions.core.inventory.models import AppSummary, CredentialSummary
from functions.core.inventory.scanner import InventoryScanner
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import unique_name_for
from functions.profiles import load_catalogue
from tests.unit.fakes import FakeClock, FakeDirectory
from tests.unit.inventory_fakes import FakeInventoryStore, FakeRecords, FakeSource

TENANT = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def profile_entries(directory: FakeDirectory, profile_id: str) -> list[tuple[str, str, str]]:
    """A profile's unconditional permissions as requiredResourceAccess entries (ids)."""
    profile = load_catalogue().get(profile_id)
    assert profile is not None
    entries = []
    for permission in profile.permissions:
        if permission.when is not None:
            continue
        catalog = next(
            c for c in directory.catalogs.values() if permission.resource in (c.app_id, c.display_name)
        )
        role = catalog.permissions(permission.kind)[permission.name]
        entries.append((catalog.app_id, role.id, "Role" if permission.kind == "application" else "Scope"))
    return entries


def app(
    name: str, rra: list[tuple[str, str, str]] = (), *, ends: list[datetime] = (), unique: str | None = None
) -> AppSummary:  # type: ignore[assignment]
    credentials = tuple(
        CredentialSummary(
            str(uuid.uuid4()), "secret", "application", "s", "abc", None, end - timedelta(days=90), end
        )
        for end in ends
    )
    return AppSummary(
        TENANT, str(uuid.uuid4()), str(uuid.uuid4()), "application", name,
        required_resource_access=tuple(rra), credentials=credentials, unique_name=unique,
    )  # fmt: skip


@pytest.fixture
def parts() -> tuple[InventoryScanner, FakeSource, FakeInventoryStore, FakeDirectory, FakeRecords]:
    directory = FakeDirectory(TENANT)
    source, store, records = FakeSource(), FakeInventoryStore(), FakeRecords()
    scanner = InventoryScanner(source, store, directory, records, load_catalogue(), FakeClock(NOW))
    return scanner, source, store, directory, records


async def test_profile_match_exact_superset_subset_and_none(parts: tuple) -> None:  # type: ignore[type-arg]
    scanner, _, _, directory, _ = parts
    sets = await scanner.profile_sets(TENANT)
    exact = profile_entries(directory, "codetwo-backup-sharepoint")
    assert sets.best(app_keys(exact)).kind == "exact"  # type: ignore[union-attr]
    assert sets.best(app_keys(exact)).profile == "codetwo-backup-sharepoint"  # type: ignore[union-attr]

    graph = next(c for c in directory.catalogs.values() if c.display_name == "Microsoft Graph")
    extra = (graph.app_id, graph.app_roles["User.ReadWrite.All"].id, "Role")
    superset = sets.best(app_keys([*exact, extra]))
    assert (
        superset is not None
        and superset.kind == "superset"
        and superset.profile == "codetwo-backup-sharepoint"
    )
    assert superset.extra == ("Microsoft Graph/User.ReadWrite.All (application)",) and superset.missing == ()

    # Without full_access_as_app it is a subset of this profile (one missing) and a superset of
    # cloudiway-gal-sync (two extra): the smaller difference wins.
    subset = sets.best(app_keys(exact[1:]))
    assert subset is not None and (subset.kind, subset.profile) == ("subset", "codetwo-backup-sharepoint")
    assert subset.missing == ("Office 365 Exchange Online/full_access_as_app (application)",)
    unrelated = (graph.app_id, graph.app_roles["Mail.Send"].id, "Role")
    assert sets.best(app_keys([unrelated])) is None
    assert sets.best(frozenset()) is None


async def test_first_scan_reads_lists_after_a_delta_baseline_and_keeps_summaries(parts: tuple) -> None:  # type: ignore[type-arg]
    scanner, source, store, directory, _ = parts
    exact = profile_entries(directory, "codetwo-backup-sharepoint")
    hand_made = [app(f"app {i}", exact, ends=[NOW + timedelta(days=i)]) for i in range(5)]
    for a in hand_made:
        source.put("applications", a, owners=0)
    sp_with = replace(app("sp", ends=[NOW]), holder="servicePrincipal")
    sp_without = replace(app("bare"), holder="servicePrincipal")
    source.put("servicePrincipals", sp_with)
    source.put("servicePrincipals", sp_without)

    outcome = await scanner.scan(TENANT)

    assert outcome.mode == "full" and outcome.applications == 5 and outcome.service_principals == 1
    assert outcome.requests == source.requests == 2 + 3 + 1  # two baselines, 5 apps at 2 a page, 2 SPs
    kept = store.summaries(TENANT)
    assert set(kept) == {a.object_id for a in hand_made} | {sp_with.object_id}
    first = kept[hand_made[0].object_id]
    assert first.match is not None and first.match.kind == "exact" and first.owner_count == 0
    assert not first.managed
    state = store.states[TENANT]
    assert (
        state.applications_link == "applications:5" and state.service_principals_link == "servicePrincipals:2"
    )


async def test_rescans_read_only_changes_and_an_unchanged_tenant_costs_two_requests(parts: tuple) -> None:  # type: ignore[type-arg]
    scanner, source, store, _, _ = parts
    apps = [app(f"a{i}", ends=[NOW]) for i in range(4)]
    for a in apps:
        source.put("applications", a)
    await scanner.scan(TENANT)

    source.requests = 0
    outcome = await scanner.scan(TENANT)
    assert outcome.mode == "delta" and outcome.requests == source.requests == 2

    source.put("applications", replace(apps[0], display_name="renamed"), owners=3)
    source.delete("applications", apps[1].object_id)
    outcome = await scanner.scan(TENANT)
    kept = store.summaries(TENANT)
    assert apps[1].object_id not in kept
    assert kept[apps[0].object_id].display_name == "renamed" and kept[apps[0].object_id].owner_count == 3


async def test_an_expired_delta_token_means_a_full_scan_that_sweeps_what_is_gone(parts: tuple) -> None:  # type: ignore[type-arg]
    scanner, source, store, _, _ = parts
    apps = [app(f"a{i}") for i in range(3)]
    for a in apps:
        source.put("applications", a)
    await scanner.scan(TENANT)
    source.objects["applications"].pop(apps[2].object_id)  # gone while the token was expiring
    source.expired = True

    outcome = await scanner.scan(TENANT)

    assert outcome.mode == "full"
    assert set(store.summaries(TENANT)) == {apps[0].object_id, apps[1].object_id}


async def test_managed_by_registrar_only_with_a_matching_record(parts: tuple) -> None:  # type: ignore[type-arg]
    scanner, source, store, _, records = parts
    registration_id, elsewhere = str(uuid.uuid4()), str(uuid.uuid4())
    records.tenants[registration_id] = TENANT
    records.tenants[elsewhere] = str(uuid.uuid4())  # Registrar's, but in another tenant
    mine = app("mine", unique=unique_name_for(registration_id))
    stranger = app("lookalike", unique=unique_name_for(str(uuid.uuid4())))
    moved = app("other tenant's name", unique=unique_name_for(elsewhere))
    for a in (mine, stranger, moved):
        source.put("applications", a)

    await scanner.scan(TENANT)

    kept = store.summaries(TENANT)
    assert kept[mine.object_id].managed_by == registration_id and kept[mine.object_id].managed
    assert kept[stranger.object_id].managed_by is None and kept[moved.object_id].managed_by is None


async def test_an_adopted_app_is_managed_by_the_registration_that_holds_it(parts: tuple) -> None:  # type: ignore[type-arg]
    """An adopted app keeps its own uniqueName: only the registrations know it (docs/adoption.md)."""
    scanner, source, store, _, records = parts
    adopted, released, elsewhere = app("by hand"), app("by hand, released"), app("by hand, other tenant")
    records.adopted = {
        "reg-a": (TENANT, adopted.app_id.upper(), "pending_ownership"),
        "reg-b": (TENANT, released.app_id, "decommissioned"),
        "reg-c": (str(uuid.uuid4()), elsewhere.app_id, "adopting"),
        "reg-d": (TENANT, str(uuid.uuid4()), "adopting"),  # more than one page of records
    }
    for a in (adopted, released, elsewhere):
        source.put("applications", a)

    await scanner.scan(TENANT)

    kept = store.summaries(TENANT)
    assert kept[adopted.object_id].managed_by == "reg-a"
    assert not kept[released.object_id].managed and not kept[elsewhere.object_id].managed


def test_a_summary_never_holds_a_secret_value() -> None:
    secret = "abc8Q~" + "x" * 34
    item = {
        "id": str(uuid.uuid4()),
        "appId": str(uuid.uuid4()),
        "displayName": "hand made",
        "passwordCredentials": [
            {
                "keyId": str(uuid.uuid4()),
                "hint": "abc",
                "secretText": secret,
                "endDateTime": "2299-12-31T00:00:00Z",
            }
        ],
        "keyCredentials": [
            {"keyId": str(uuid.uuid4()), "customKeyIdentifier": "AQID", "key": "c2VjcmV0LWtleQ=="}
        ],
        "owners": [{"id": "x"}],
    }
    made = summary(TENANT, "applications", item)
    text = json.dumps(made.to_json())
    assert secret not in text and "c2VjcmV0LWtleQ==" not in text
    assert made.owner_count == 1 and made.credentials[1].thumbprint == "010203"
    assert made.credentials[0].end == datetime(2299, 12, 31, tzinfo=UTC)


class Crash(Exception):  # noqa: N818  (the process died)
    pass


class DyingStore(FakeInventoryStore):
    """Dies at its `kill_at`-th write (put, replace, remove, sweep or save_state), once."""

    def __init__(self, kill_at: int) -> None:
        super().__init__()
        self.kill_at, self.writes = kill_at, 0

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.kill_at:
            raise Crash

    async def put(self, apps: Any, scan_id: str) -> None:
        self._write()
        await super().put(apps, scan_id)

    async def replace(self, app: AppSummary, scan_id: str) -> None:
        self._write()
        await super().replace(app, scan_id)

    async def remove(self, tenant_id: str, object_ids: Any) -> None:
        self._write()
        await super().remove(tenant_id, object_ids)

    async def sweep(self, tenant_id: str, scan_id: str) -> int:
        self._write()
        return await super().sweep(tenant_id, scan_id)

    async def save_state(self, state: Any) -> Any:
        self._write()
        return await super().save_state(state)


@pytest.mark.parametrize("kill_at", range(1, 8))
async def test_a_scan_killed_after_any_write_converges_when_run_again(kill_at: int) -> None:
    directory, source, store = FakeDirectory(TENANT), FakeSource(), DyingStore(kill_at)
    scanner = InventoryScanner(source, store, directory, FakeRecords(), load_catalogue(), FakeClock(NOW))
    gone = app("deleted since the last inventory", ends=[NOW])
    await FakeInventoryStore.put(store, [gone], "an older scan")  # what an earlier inventory held
    for i in range(7):
        source.put("applications", app(f"a{i}", ends=[NOW + timedelta(days=i)]))

    try:
        await scanner.scan(TENANT)
    except Crash:
        await scanner.scan(TENANT)  # the queue delivers the scan again
    assert store.writes >= kill_at, "the crash happened"
    kept = store.summaries(TENANT)
    assert {k: v.display_name for k, v in kept.items()} == {
        a.object_id: a.display_name for a in source.objects["applications"].values()
    }
    assert store.states[TENANT].applications_link == "applications:7"


def adoption_record(registration_id: str, app_id: str, status: str) -> Any:
    """A registration as marking.reflect reads it: id, tenant, adopted app, status."""
    return SimpleNamespace(
        id=registration_id,
        tenant_id=TENANT,
        adoption=SimpleNamespace(app_id=app_id),
        status=RegistrationStatus(status),
    )


@pytest.mark.parametrize("ended", ["decommissioned", "failed"])
async def test_a_released_adoption_shows_the_app_unmanaged_at_once(parts: tuple, ended: str) -> None:  # type: ignore[type-arg]
    """Decommissioned (released) or failed: unmanaged now, not from the next scan; and only the
    mark that registration holds is cleared."""
    scanner, source, store, _, records = parts
    adopted, other = app("by hand"), app("adopted by another")
    records.adopted = {"reg-a": (TENANT, adopted.app_id, "active"), "reg-b": (TENANT, other.app_id, "active")}
    for a in (adopted, other):
        source.put("applications", a)
    await scanner.scan(TENANT)
    assert store.summaries(TENANT)[adopted.object_id].managed_by == "reg-a"

    assert await reflect(store, adoption_record("reg-a", adopted.app_id.upper(), ended)) == 1

    kept = store.summaries(TENANT)
    assert not kept[adopted.object_id].managed and kept[other.object_id].managed_by == "reg-b"
    # A stale release of another registration never clears the mark of the one holding the app now.
    assert await reflect(store, adoption_record("reg-old", other.app_id, ended)) == 0
    assert store.summaries(TENANT)[other.object_id].managed_by == "reg-b"
    # And an adoption that holds the app marks it again (the ownership check, a takeover's settle).
    assert await reflect(store, adoption_record("reg-c", adopted.app_id, "active")) == 1
    assert store.summaries(TENANT)[adopted.object_id].managed_by == "reg-c"


class RacingSource(FakeSource):
    """Runs `meanwhile` once, after the scan read the records and before it writes its first page."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: Any = None

    async def list_pages(self, tenant_id: str, collection: Any) -> Any:
        if self.meanwhile is not None:
            act, self.meanwhile = self.meanwhile, None
            await act()
        async for page in super().list_pages(tenant_id, collection):
            yield page

    async def delta_pages(self, tenant_id: str, link: str) -> Any:
        if self.meanwhile is not None:
            act, self.meanwhile = self.meanwhile, None
            await act()
        async for page in super().delta_pages(tenant_id, link):
            yield page


@pytest.mark.parametrize("mode", ["full", "delta"])
async def test_a_mark_made_during_a_scan_is_not_undone_by_its_older_reading(mode: str) -> None:
    """The scan read the records before an adoption and a release were saved and marked; its
    writes, made after the marks, must not leave either app as the older reading said."""
    directory, source, store, records = (
        FakeDirectory(TENANT),
        RacingSource(),
        FakeInventoryStore(),
        FakeRecords(),
    )
    scanner = InventoryScanner(source, store, directory, records, load_catalogue(), FakeClock(NOW))
    taken, released = app("adopted during the scan"), app("released during the scan")
    records.adopted = {"reg-r": (TENANT, released.app_id, "active")}
    for a in (taken, released):
        source.put("applications", a)
    await scanner.scan(TENANT)
    assert not store.summaries(TENANT)[taken.object_id].managed
    if mode == "delta":  # both apps change, so the delta round rewrites both summaries
        for a in (taken, released):
            source.put("applications", replace(a, display_name=f"{a.display_name}, renamed"))
    else:
        source.expired = True

    async def adopt_and_release() -> None:
        records.adopted["reg-t"] = (TENANT, taken.app_id, "adopting")  # saved, then marked
        records.adopted["reg-r"] = (TENANT, released.app_id, "decommissioned")
        assert await reflect(store, adoption_record("reg-t", taken.app_id, "adopting")) == 1
        assert await reflect(store, adoption_record("reg-r", released.app_id, "decommissioned")) == 1

    source.meanwhile = adopt_and_release
    outcome = await scanner.scan(TENANT)

    assert outcome.mode == mode
    kept = store.summaries(TENANT)
    assert kept[taken.object_id].managed_by == "reg-t"
    assert not kept[released.object_id].managed
