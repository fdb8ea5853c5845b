"""A brownfield tenant: connector apps registered by hand, as the seed procedures make them.

`fill(directory, admin_client_id, count, ...)` adds `count` applications made by the tenant
administrator (a person in the portal, never Registrar):
- requiredResourceAccess from the connector profiles (functions/profiles/connectors), some exact,
  some with the seeds' own mistake of asking both X.Read.All and X.ReadWrite.All (a superset), some
  missing a permission (a subset); application permissions consented by the admin;
- client secrets and certificates ending long ago, days away, years away, and in 2299 (the portal's
  "Never"); a few apps with none;
- some without owners (the person who made them left), the rest owned by the administrator; some
  multi-tenant; some service principals with passwords of their own.
Registrar owns none of them: Application.ReadWrite.OwnedBy cannot touch them until someone adds it
as an owner. Deterministic for a given `seed`.
"""

from __future__ import annotations

import random
import time
import tomllib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devstack.tenant.graph.directory import Directory
from devstack.tenant.graph.model import KeyCredential, PasswordCredential, iso, new_secret_text
from devstack.tenant.graph.seeds import SEEDS, catalogue

CONNECTORS_DIR = Path(__file__).resolve().parents[2] / "functions" / "profiles" / "connectors"
NEVER = datetime(2299, 12, 31, tzinfo=UTC)  # what the portal's "Never" (and Cloud Elements' guide) gives
CERTIFICATE_POOL = 4  # distinct certificates per end date bucket: signing thousands would take minutes


@dataclass(frozen=True)
class Summary:
    applications: int
    service_principals: int
    secrets: int
    certificates: int

    def to_json(self) -> dict[str, int]:
        return {
            "applications": self.applications,
            "servicePrincipals": self.service_principals,
            "secrets": self.secrets,
            "certificates": self.certificates,
        }


PermissionSet = tuple[str, tuple[tuple[str, str, str], ...]]


def connector_permission_sets() -> tuple[PermissionSet, ...]:
    """(connector title, ((resource appId, permission id, "Role"|"Scope"), ...)) per profile, as
    resolved against the tenant's resource catalogues; names the catalogues lack are left out."""
    return tuple(permission_sets_by_profile().values())


@cache
def permission_sets_by_profile() -> dict[str, PermissionSet]:
    """connector_permission_sets() keyed by profile id, in the profiles' file order."""
    by_name = {display: name for name, (_, _, display, _) in SEEDS.items()}
    sets = {}
    for path in sorted(CONNECTORS_DIR.glob("*.toml")):
        profile = tomllib.loads(path.read_text(encoding="utf-8"))
        entries = []
        for permission in profile.get("permissions", []):
            seed = by_name.get(permission.get("resource", ""))
            if seed is None:
                continue
            roles, scopes, _, _ = catalogue(seed)
            kind = "Role" if permission.get("type") == "application" else "Scope"
            pool = roles if kind == "Role" else scopes
            found = next((p for p in pool if p.get("value") == permission.get("name")), None)
            if found is not None:
                entries.append((SEEDS[seed][1], str(found["id"]), kind))
        if entries:
            profile_id = str(profile.get("id") or path.stem)
            sets[profile_id] = (str(profile.get("title") or profile_id), tuple(entries))
    return sets


def _read_twin(entry: tuple[str, str, str]) -> tuple[str, str, str] | None:
    """X.Read.All beside X.ReadWrite.All: the seeds' mistake of asking both."""
    appid, permission_id, kind = entry
    seed = next(name for name, spec in SEEDS.items() if spec[1] == appid)
    roles, scopes, _, _ = catalogue(seed)
    pool = roles if kind == "Role" else scopes
    value = next((str(p["value"]) for p in pool if p["id"] == permission_id), "")
    if ".ReadWrite." not in value:
        return None
    twin = value.replace(".ReadWrite.", ".Read.")
    found = next((p for p in pool if p.get("value") == twin), None)
    return (appid, str(found["id"]), kind) if found is not None else None


def _required_resource_access(entries: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    by_resource: dict[str, list[dict[str, str]]] = {}
    for appid, permission_id, kind in entries:
        by_resource.setdefault(appid, []).append({"id": permission_id, "type": kind})
    return [{"resourceAppId": appid, "resourceAccess": access} for appid, access in by_resource.items()]


class _Certificates:
    """A few self-signed certificates per end date, made with one RSA key."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._made: dict[tuple[datetime, int], bytes] = {}

    def der(self, start: datetime, end: datetime, slot: int) -> bytes:
        found = self._made.get((end, slot))
        if found is None:
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"connector-{slot}")])
            certificate = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(self._key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(end)
                .sign(self._key, hashes.SHA256())
            )
            found = self._made[(end, slot)] = certificate.public_bytes(serialization.Encoding.DER)
        return found


def _end_date(rng: random.Random, now: datetime) -> datetime:
    bucket = rng.random()
    if bucket < 0.15:
        return (now - timedelta(days=rng.randint(1, 400))).replace(microsecond=0)  # expired
    if bucket < 0.35:
        return (now + timedelta(days=rng.randint(1, 30))).replace(microsecond=0)  # days away
    if bucket < 0.8:
        return (now + timedelta(days=rng.randint(31, 3 * 365))).replace(microsecond=0)  # years away
    return NEVER


def fill(
    directory: Directory,
    admin_client_id: str,
    count: int,
    *,
    service_principals: int | None = None,
    sp_passwords: float = 0.1,
    seed: int = 15,
    connectors: tuple[str, ...] = (),
) -> Summary:
    """Add `count` hand-made connector apps (service principals for the first `service_principals`,
    a share `sp_passwords` of those with a password of their own), cycling through every connector
    profile, or only through `connectors` (profile ids) in that order."""
    rng = random.Random(seed)
    admin = directory.service_principal_by_app_id(admin_client_id)
    assert admin is not None, "the tenant administrator's service principal"
    by_profile = permission_sets_by_profile()
    unknown = [c for c in connectors if c not in by_profile]
    if unknown:
        raise ValueError(f"no connector profile with permissions the tenant knows: {', '.join(unknown)}")
    sets = [by_profile[c] for c in connectors] if connectors else list(by_profile.values())
    now = datetime.now(UTC).replace(microsecond=0)
    certificates = _Certificates()
    with_sp = count if service_principals is None else min(service_principals, count)
    secrets_made = certificates_made = 0
    for index in range(count):
        title, entries = sets[index % len(sets)]
        chosen = list(entries)
        variant = rng.random()
        if variant < 0.2:  # the seeds' mistake: Read beside ReadWrite
            chosen += [twin for e in entries if (twin := _read_twin(e)) is not None and twin not in entries]
        elif variant < 0.3 and len(chosen) > 1:  # someone left one out
            chosen.pop(rng.randrange(len(chosen)))
        audience = "AzureADMultipleOrgs" if rng.random() < 0.15 else "AzureADMyOrg"
        owners = [] if rng.random() < 0.3 else [admin.id]
        app = directory.create_application(
            {
                "displayName": f"{title} ({index + 1})",
                "signInAudience": audience,
                "requiredResourceAccess": _required_resource_access(chosen),
            },
            owner_ids=owners,
        )
        app.created_at = 0.0  # long replicated
        shape = rng.random()
        for _ in range(0 if shape < 0.05 else 1 + (rng.random() < 0.3)):
            end = _end_date(rng, now)
            start = min(now - timedelta(days=rng.randint(1, 700)), end - timedelta(days=1))
            if rng.random() < 0.7:
                secret = PasswordCredential.issue(new_secret_text(), "connector secret", start, end, 0.0)
                app.password_credentials.append(secret)
                secrets_made += 1
            else:
                der = certificates.der(start, end, rng.randrange(CERTIFICATE_POOL))
                key = KeyCredential(
                    str(uuid.uuid4()),
                    "connector certificate",
                    "AsymmetricX509Cert",
                    "Verify",
                    der,
                    start,
                    end,
                    0.0,
                )
                app.key_credentials.append(key)
                certificates_made += 1
        app.credentials_changed()
        if index >= with_sp:
            continue
        sp = directory.create_service_principal(app, owner_ids=owners)
        sp.created_at = 0.0
        if (
            rng.random() < sp_passwords
        ):  # a password on the service principal itself (SAML signing, legacy scripts)
            end = _end_date(rng, now)
            sp.props["passwordCredentials"] = [
                {
                    "customKeyIdentifier": None,
                    "displayName": "service principal password",
                    "endDateTime": iso(end),
                    "hint": new_secret_text()[:3],
                    "keyId": str(uuid.uuid4()),
                    "secretText": None,
                    "startDateTime": iso(min(now, end) - timedelta(days=1)),
                }
            ]
            sp.changed()
        _consent(directory, sp, chosen)
    return Summary(count, with_sp, secrets_made, certificates_made)


def _consent(directory: Directory, sp: Any, entries: list[tuple[str, str, str]]) -> None:
    """The administrator's "Grant admin consent": an app role assignment per application permission."""
    for appid, permission_id, kind in entries:
        resource = directory.service_principal_by_app_id(appid)
        if kind != "Role" or resource is None:
            continue
        if directory.consent.find_assignment(sp.id, resource.id, permission_id) is None:
            directory.assign_app_role(sp, resource, permission_id)


def timed_fill(directory: Directory, admin_client_id: str, count: int, **options: Any) -> dict[str, Any]:
    started = time.perf_counter()
    summary = fill(directory, admin_client_id, count, **options)
    return {**summary.to_json(), "seconds": round(time.perf_counter() - started, 3)}
