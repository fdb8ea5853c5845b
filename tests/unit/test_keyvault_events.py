"""Key Vault events parse tolerantly: the variants found in Microsoft's published samples."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from functions.core.rotation.keyvault_events import (
    KeyVaultEventKind,
    ObjectType,
    UnusableEvent,
    parse_envelope,
    parse_key_vault_event,
)

EXP = 1_800_000_000
VERSIONED_ID = "https://vault1.vault.azure.net/secrets/reg-abc/0123456789abcdef0123456789abcdef"


def test_event_grid_schema_as_documented() -> None:
    event = parse_envelope(
        {
            "id": "e1",
            "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/vault1",
            "subject": "reg-abc",
            "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
            "eventTime": "2026-11-22T03:00:00Z",
            "data": {
                "Id": VERSIONED_ID,
                "VaultName": "vault1",
                "ObjectType": "Secret",
                "ObjectName": "reg-abc",
                "Version": "0123456789abcdef0123456789abcdef",
                "NBF": None,
                "EXP": EXP,
            },
            "dataVersion": "1",
        }
    )

    assert event.kind is KeyVaultEventKind.NEW_VERSION
    assert event.object_type is ObjectType.SECRET
    assert (event.vault_name, event.object_name) == ("vault1", "reg-abc")
    assert event.version == "0123456789abcdef0123456789abcdef"
    assert event.expires_on == datetime.fromtimestamp(EXP, tz=UTC)
    assert event.not_before is None


@pytest.mark.parametrize("exp", [EXP, str(EXP), float(EXP), "2027-01-15T08:00:00Z", None, "not a date"])
def test_dates_as_number_string_iso_or_null(exp: object) -> None:
    event = parse_key_vault_event(
        event_id="e", event_type="Microsoft.KeyVault.SecretNearExpiry", subject="reg-abc", data={"exp": exp}
    )
    assert event.kind is KeyVaultEventKind.NEAR_EXPIRY
    if exp in (None, "not a date"):
        assert event.expires_on is None
    elif exp == "2027-01-15T08:00:00Z":
        assert event.expires_on == datetime(2027, 1, 15, 8, tzinfo=UTC)
    else:
        assert event.expires_on == datetime.fromtimestamp(EXP, tz=UTC)


@pytest.mark.parametrize("exp", [EXP * 1000, str(EXP * 1000)])
def test_a_date_in_milliseconds_is_read_as_such(exp: object) -> None:
    event = parse_key_vault_event(
        event_id="e", event_type="Microsoft.KeyVault.SecretNearExpiry", subject="reg-abc", data={"exp": exp}
    )
    assert event.expires_on == datetime.fromtimestamp(EXP, tz=UTC)


@pytest.mark.parametrize("exp", [-1e300, "-1e300", 1e300, "1e20", "Infinity", "NaN", float("inf"), -(10**20)])
def test_an_out_of_range_date_is_unknown_not_a_crash(exp: object) -> None:
    event = parse_key_vault_event(
        event_id="e", event_type="Microsoft.KeyVault.SecretExpired", subject="reg-abc", data={"exp": exp}
    )
    assert (event.kind, event.object_name, event.expires_on) == (KeyVaultEventKind.EXPIRED, "reg-abc", None)


@pytest.mark.parametrize("data", [["not", "an", "object"], "text", 42])
def test_data_that_is_not_an_object_falls_back_to_the_subject(data: object) -> None:
    event = parse_key_vault_event(
        event_id="e",
        event_type="Microsoft.KeyVault.SecretNewVersionCreated",
        subject="reg-abc",
        data=data,  # type: ignore[arg-type]
    )
    assert (event.object_name, event.version) == ("reg-abc", None)


def test_camel_case_keys_cloudevents_envelope_and_version_from_id() -> None:
    event = parse_envelope(
        {
            "id": "e2",
            "type": "Microsoft.KeyVault.CertificateExpired",
            "source": "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/vault1",
            "subject": "cert-abc",
            "data": {"id": "https://vault1.vault.azure.net/certificates/cert-abc/v9", "vaultName": "vault1"},
        }
    )

    assert (event.kind, event.object_type) == (KeyVaultEventKind.EXPIRED, ObjectType.CERTIFICATE)
    assert (event.object_name, event.version) == ("cert-abc", "v9")


def test_unprefixed_type_and_name_only_in_subject() -> None:
    event = parse_key_vault_event(event_id="e3", event_type="SecretExpired", subject="reg-abc", data=None)
    assert (event.kind, event.object_name, event.version) == (KeyVaultEventKind.EXPIRED, "reg-abc", None)


@pytest.mark.parametrize(
    ("event_type", "subject"),
    [
        ("Microsoft.KeyVault.VaultAccessPolicyChanged", "vault1"),
        ("Microsoft.Storage.BlobCreated", "/blobServices/default/containers/x"),
        ("Microsoft.KeyVault.SecretNewVersionCreated", ""),
    ],
)
def test_events_registrar_cannot_act_on_are_refused(event_type: str, subject: str) -> None:
    with pytest.raises(UnusableEvent):
        parse_key_vault_event(event_id="e", event_type=event_type, subject=subject, data={})
