"""The registration workflow against in-memory fakes: every step, crash safety, duplicates,
approval, decommission, and no secret value anywhere but the vault."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import timedelta

import pytest

from functions.core.provisioning.workflow import WorkflowSettings
from functions.core.record.errors import Conflict, PermanentError, TransientError
from functions.core.record.models import (
    CredentialSpec,
    CredentialType,
    PermissionKind,
    RegistrationStatus,
    WebhookSpec,
)
from functions.core.record.registration import Registration, vault_object_name
from tests.unit.fakes import Crash, FakeTokenProbe, Faults, Flaky
from tests.unit.provisioning_world import World, fast_sleep


def assert_converged(world: World, record: Registration) -> None:
    """One app, one SP, exactly the plan's consent, exactly one credential and it is the vault's."""
    d = world.directory
    assert record.status is RegistrationStatus.ACTIVE
    apps = list(d.apps.values())
    assert len(apps) == 1
    app = apps[0]
    assert (record.app_object_id, record.app_id) == (app.object_id, app.app_id)
    assert d.service_principals[app.app_id] == record.service_principal_id
    sp = record.service_principal_id
    sp_of = {c.app_id: c.service_principal_id for c in d.catalogs.values()}
    wanted_roles = {
        (sp, sp_of[p.resource_app_id], p.id)
        for p in record.plan.permissions
        if p.kind is PermissionKind.APPLICATION
    }
    assert d.assignments == wanted_roles
    wanted_scopes: dict[str, set[str]] = {}
    for p in record.plan.permissions:
        if p.kind is PermissionKind.DELEGATED:
            wanted_scopes.setdefault(sp_of[p.resource_app_id], set()).add(p.name)
    grants = {resource: set(scopes) for client, resource, scopes in d.grants.values() if client == sp}
    assert grants == wanted_scopes
    assert len(d.grants) == len(wanted_scopes)
    credential = record.credential
    assert credential is not None and credential.verified_at is not None
    assert record.pending_credential is None
    name = vault_object_name(record.id)
    if credential.type is CredentialType.SECRET:
        assert app.keys == [] and app.federated == {}
        assert list(app.passwords) == [credential.key_id]
        assert world.vault.latest_value(name) == app.passwords[credential.key_id][3]
        latest = world.vault.secrets[name][-1].ref
        assert latest.version == credential.secret_version
        assert latest.tags["keyId"] == credential.key_id
    else:
        assert app.passwords == {} and app.federated == {}
        assert [k.key_id for k in app.keys] == [credential.key_id]
        assert app.keys[0].certificate_der == world.vault.certificates[name][-1].der
        assert credential.certificate_version == world.vault.certificates[name][-1].version


def issued_values(world: World) -> list[str]:
    return [v[3] for app in world.directory.apps.values() for v in app.passwords.values()]


async def test_secret_registration_ends_active_with_exact_consent_and_one_vaulted_secret() -> None:
    world = World()
    accepted = await world.accept()
    assert accepted.created and accepted.registration.status is RegistrationStatus.ACCEPTED

    record = await world.provisioner().run(accepted.registration.id)

    assert_converged(world, record)
    assert record.granted_permissions == record.plan.permissions
    app = next(iter(world.directory.apps.values()))
    assert app.spec.unique_name == f"registrar-{record.id}"
    assert app.spec.sign_in_audience == "AzureADMyOrg"
    assert app.spec.redirect_uris.web == ("https://connector.example.com/callback",)
    assert {r.resource_app_id for r in app.spec.required_resource_access} == {
        p.resource_app_id for p in record.plan.permissions
    }
    credential = record.credential
    assert credential is not None
    assert credential.display_name == f"registrar-{record.id}-g1"
    tags = world.vault.secrets[record.id][-1].ref.tags
    assert tags["registrationId"] == record.id and tags["appId"] == record.app_id
    assert tags["generation"] == "1" and tags["keyId"] == credential.key_id
    assert world.vault.secrets[record.id][-1].ref.expires_on == credential.expires_on
    assert credential.expires_on - credential.start == timedelta(days=180)
    done = [e.step for e in record.history if e.outcome == "done"]
    assert done[0] == "accepted" and done[-1] == "active"
    assert set(done) == {"accepted", "app", "service_principal", "consent", "credential", "verify", "active"}
    assert done.index("app") < done.index("service_principal") < done.index("verify")
    assert done.index("app") < done.index("credential") < done.index("verify")
    assert record.lease_owner is None


async def test_consent_is_one_batch_call_and_a_first_run_reads_nothing_back() -> None:
    world = World()
    accepted = await world.accept()
    await world.provisioner().run(accepted.registration.id)
    d = world.directory
    assert d.count("assign_app_roles") == 1
    assert d.count("grant_delegated") == 1  # one resource (Graph) with delegated scopes
    assert d.count("app_role_assignments") == 0 and d.count("delegated_grants") == 0
    assert d.count("upsert_application") == 1 and d.count("add_password") == 1


async def test_naive_settings_make_one_call_per_assignment_with_the_same_outcome() -> None:
    world = World()
    accepted = await world.accept()
    record = await world.provisioner(settings=WorkflowSettings(concurrent=False)).run(
        accepted.registration.id
    )
    assert_converged(world, record)
    assert world.directory.count("assign_app_roles") == 4


async def test_certificate_registration_puts_the_vault_certificate_in_key_credentials() -> None:
    world = World()
    plan = world.plan(credential=CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    accepted = await world.accept(plan=plan)
    record = await world.provisioner().run(accepted.registration.id)
    assert_converged(world, record)
    credential = record.credential
    assert credential is not None and credential.thumbprint
    assert credential.certificate_uri and credential.secret_uri
    assert world.probe is not None and world.probe.count("try_certificate") == 1


async def test_federated_registration_adds_the_credential_and_skips_the_token_probe() -> None:
    world = World()
    spec = CredentialSpec(
        CredentialType.FEDERATED, issuer="https://issuer.example.com", subject="connector-1"
    )
    accepted = await world.accept(plan=world.plan(credential=spec))
    record = await world.provisioner().run(accepted.registration.id)
    assert record.status is RegistrationStatus.ACTIVE
    app = next(iter(world.directory.apps.values()))
    assert app.passwords == {} and app.keys == []
    assert list(app.federated) == [f"registrar-{record.id}-g1"]
    assert any(e.step == "verify" and e.outcome == "skipped" for e in record.history)


async def test_a_rerun_of_an_active_registration_calls_nothing_outside() -> None:
    world = World()
    accepted = await world.accept()
    await world.provisioner().run(accepted.registration.id)
    before = (len(world.directory.calls), len(world.vault.calls))
    record = await world.provisioner().run(accepted.registration.id)
    assert record.status is RegistrationStatus.ACTIVE
    assert (len(world.directory.calls), len(world.vault.calls)) == before


async def count_calls_of_a_clean_run(credential: CredentialSpec) -> int:
    world = World()
    accepted = await world.accept(plan=world.plan(credential=credential))
    faults = Faults()
    await world.crashing_provisioner(faults).run(accepted.registration.id)
    return faults.count


SECRET = CredentialSpec(CredentialType.SECRET, timedelta(days=90))
CERTIFICATE = CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=90))


@pytest.mark.parametrize("credential", [SECRET, CERTIFICATE], ids=["secret", "certificate"])
async def test_a_crash_after_each_outside_call_then_a_rerun_converges(credential: CredentialSpec) -> None:
    total = await count_calls_of_a_clean_run(credential)
    assert total > 10
    for crash_after in range(1, total + 1):
        world = World()
        accepted = await world.accept(plan=world.plan(credential=credential))
        faults = Faults(crash_after=crash_after)
        with pytest.raises(Crash):
            await world.crashing_provisioner(faults, owner="crashed-worker").run(accepted.registration.id)
        world.clock.advance(timedelta(minutes=6))  # the dead worker's lease expires
        record = await world.provisioner(owner="next-worker").run(accepted.registration.id)
        assert_converged(world, record)


async def test_the_same_request_is_the_same_registration_and_a_different_body_conflicts() -> None:
    world = World()
    first = await world.accept()
    again = await world.accept()
    assert not again.created and again.registration.id == first.registration.id
    with pytest.raises(Conflict):
        await world.accept(world.request(display_name="Something else"))
    assert len(world.store.documents) == 1


async def test_five_concurrent_deliveries_give_one_registration_and_one_app() -> None:
    world = World()
    accepted = await asyncio.gather(*(world.accept() for _ in range(5)))
    assert len({a.registration.id for a in accepted}) == 1
    runs = [world.provisioner(owner=f"worker-{i}", sleep=fast_sleep) for i in range(5)]
    results = await asyncio.gather(*(r.run(accepted[0].registration.id) for r in runs))
    assert {r.status for r in results} == {RegistrationStatus.ACTIVE}
    assert_converged(world, results[-1])
    assert world.directory.count("upsert_application") == 1


async def test_propagation_delay_is_retried_with_backoff_until_the_secret_works() -> None:
    world = World()
    world.probe = FakeTokenProbe(world.directory, world.vault, not_accepted_for=3)
    accepted = await world.accept()
    record = await world.provisioner().run(accepted.registration.id)
    assert_converged(world, record)
    assert world.sleeps == [2.0, 2.0, 4.0]  # Retry-After 2 s honoured, then the doubling backoff


async def test_verify_gives_up_as_transient_and_a_later_run_reads_the_secret_from_the_vault() -> None:
    world = World()
    world.probe = FakeTokenProbe(world.directory, world.vault, not_accepted_for=50)
    accepted = await world.accept()
    settings = WorkflowSettings(verify_timeout=timedelta(seconds=10))
    with pytest.raises(TransientError):
        await world.provisioner(settings=settings).run(accepted.registration.id)
    paused = await world.store.get(accepted.registration.id)
    assert paused.status is RegistrationStatus.PROVISIONING
    assert paused.last_error is not None and paused.last_error.kind == "transient"
    assert paused.last_error.step == "verify" and paused.lease_owner is None
    world.probe.not_accepted_for = 0
    record = await world.provisioner().run(accepted.registration.id)
    assert_converged(world, record)
    assert world.vault.count("get_secret") == 1
    assert record.last_error is None


async def test_a_transient_graph_error_propagates_and_the_retry_resumes() -> None:
    world = World()
    accepted = await world.accept()
    original = world.directory.ensure_service_principal
    failures = iter([TransientError("NoBackingApplicationObject", retry_after=timedelta(seconds=5))])

    async def flaky(tenant_id: str, app_id: str) -> str:
        for err in failures:
            raise err
        return await original(tenant_id, app_id)

    world.directory.ensure_service_principal = flaky  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        await world.provisioner().run(accepted.registration.id)
    record = await world.provisioner().run(accepted.registration.id)
    assert_converged(world, record)
    assert world.directory.count("upsert_application") == 1


async def test_a_permanent_error_fails_the_registration_and_removes_what_was_made() -> None:
    world = World()
    accepted = await world.accept()

    async def denied(*args: object, **kwargs: object) -> None:
        raise PermanentError(
            "Authorization_RequestDenied: insufficient privileges", code="Authorization_RequestDenied"
        )

    world.directory.assign_app_roles = denied  # type: ignore[method-assign]
    record = await world.provisioner().run(accepted.registration.id)
    assert record.status is RegistrationStatus.FAILED
    assert record.last_error is not None
    assert record.last_error.step == "consent" and record.last_error.code == "Authorization_RequestDenied"
    assert world.directory.apps == {} and len(world.directory.deleted_apps) == 1
    assert world.vault.secrets.get(record.id) is None
    assert record.app_id is None and record.credential is None
    again = await world.provisioner().run(accepted.registration.id)
    assert again.status is RegistrationStatus.FAILED and world.directory.apps == {}


async def test_tier0_registration_waits_for_approval_then_provisions() -> None:
    world = World()
    plan = world.plan(
        approval_reasons=("Application.ReadWrite.All (application) on Microsoft Graph is tier-0",)
    )
    accepted = await world.accept(plan=plan)
    held = await world.provisioner().run(accepted.registration.id)
    assert held.status is RegistrationStatus.PENDING_APPROVAL
    assert world.directory.apps == {}
    assert (await world.provisioner().run(held.id)).status is RegistrationStatus.PENDING_APPROVAL

    approved, enqueue = await world.lifecycle().approve(held.id, "approver@contoso.com")
    assert enqueue and approved.status is RegistrationStatus.ACCEPTED
    assert approved.approval is not None and approved.approval.approved_by == "approver@contoso.com"
    # Approving again records nothing new, but while the worker has not started on it (the first
    # enqueue may have failed after the record was saved) it asks for the enqueue again.
    again, enqueue_again = await world.lifecycle().approve(held.id, "someone-else")
    assert enqueue_again and again.approval is not None
    assert again.approval.approved_by == "approver@contoso.com"

    record = await world.provisioner().run(held.id)
    assert_converged(world, record)
    after, enqueue_after = await world.lifecycle().approve(held.id, "someone-else")
    assert not enqueue_after and after.status is RegistrationStatus.ACTIVE


async def test_approving_a_registration_that_is_not_held_conflicts() -> None:
    world = World()
    accepted = await world.accept()
    with pytest.raises(Conflict):
        await world.lifecycle().approve(accepted.registration.id, "approver")


async def test_decommission_removes_credentials_app_and_vault_objects_and_keeps_the_record() -> None:
    world = World()
    request = world.request(webhooks=(WebhookSpec("https://connector.example.com/hook"),))
    accepted = await world.accept(request)
    sub = accepted.registration.webhooks[0]
    assert sub.secret_name in world.vault.secrets
    record = await world.provisioner().run(accepted.registration.id)
    app_object_id = record.app_object_id

    gone = await world.lifecycle().decommission(record.id, "admin@contoso.com")
    assert gone.status is RegistrationStatus.DECOMMISSIONED
    assert world.directory.apps == {} and world.directory.deleted_apps == [app_object_id]
    assert record.id not in world.vault.secrets and sub.secret_name not in world.vault.secrets
    assert gone.credential is None and gone.app_id == record.app_id  # the record keeps the ids
    assert (
        await world.lifecycle().decommission(record.id, "admin")
    ).status is RegistrationStatus.DECOMMISSIONED


async def test_webhook_secrets_are_returned_once_and_kept_only_in_the_vault() -> None:
    world = World()
    request = world.request(webhooks=(WebhookSpec("https://connector.example.com/hook"),))
    accepted = await world.accept(request)
    (sub_id, secret), *_ = accepted.webhook_secrets.items()
    sub = accepted.registration.webhooks[0]
    assert sub.id == sub_id
    assert world.vault.latest_value(f"webhook-{sub_id}") == secret.reveal()
    assert secret.reveal().startswith("whsec_")
    assert secret.reveal() not in json.dumps(world.store.documents)
    assert (await world.accept(request)).webhook_secrets == {}


async def test_no_secret_value_reaches_the_record_logs_or_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world = World()
    world.probe = FakeTokenProbe(world.directory, world.vault, not_accepted_for=50)
    accepted = await world.accept()
    errors: list[str] = []
    try:
        await world.provisioner(settings=WorkflowSettings(verify_timeout=timedelta(seconds=3))).run(
            accepted.registration.id
        )
    except TransientError as err:
        errors.append(repr(err) + str(err))
    world.probe.not_accepted_for = 0
    record = await world.provisioner().run(accepted.registration.id)
    assert record.status is RegistrationStatus.ACTIVE
    values = issued_values(world)
    assert values and errors
    documents = json.dumps(world.store.documents)
    for value in values:
        assert value not in caplog.text
        assert value not in documents
        assert value not in repr(record)
        assert all(value not in e for e in errors)


def test_the_record_survives_a_document_round_trip() -> None:
    async def build() -> Registration:
        world = World()
        accepted = await world.accept(world.request(webhooks=(WebhookSpec("https://x.example.com/h"),)))
        return await world.provisioner().run(accepted.registration.id)

    record = asyncio.run(build())
    copy = Registration.from_document(json.loads(json.dumps(record.to_document())), etag=record.etag)
    assert copy == record


async def test_twenty_registrations_converge_through_transient_faults_on_a_fifth_of_calls() -> None:
    rng = random.Random(20261122)
    world = World()
    ids = [(await world.accept(world.request(f"INC-F{n:02d}"))).registration.id for n in range(20)]
    flaky = {
        "directory": Flaky(world.directory, rng, 0.2),
        "vault": Flaky(world.vault, rng, 0.2),
        "probe": Flaky(world.probe, rng, 0.2),
    }
    deliveries = 0
    for registration_id in ids:
        for _ in range(40):  # the queue re-delivers until the worker stops raising
            deliveries += 1
            try:
                record = await world.provisioner(**flaky).run(registration_id)
            except TransientError:
                continue
            break
        assert record.status is RegistrationStatus.ACTIVE, record.last_error
    assert deliveries > 20  # faults did happen
    records = [await world.store.get(i) for i in ids]
    assert len(world.directory.apps) == 20
    for record in records:
        app = world.directory.apps[record.app_object_id or ""]
        assert record.credential is not None
        assert list(app.passwords) == [record.credential.key_id]  # no orphaned credential
        assert world.vault.latest_value(record.id) == app.passwords[record.credential.key_id][3]
