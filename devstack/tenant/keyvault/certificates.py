"""Key Vault certificates: /certificates and /deletedcertificates (REST API 7.x).

The key is generated in the vault (cryptography, in a worker thread so the event loop keeps
serving). Each new certificate version writes the backing secret version with the same version
id (PFX base64 or PEM with the private key, managed=true), so both events fire.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from . import policy as policies
from .common import apply_attributes, page, parse_attributes, parse_tags, read_json
from .errors import VaultError, bad_parameter, deleted_not_found, in_deleted_state, not_found
from .model import Attributes, CertificateEntry, CertificateVersion, Deletion, new_version_id
from .x509gen import PKCS12, Material, load_import, self_signed

if TYPE_CHECKING:
    from .vault import KeyVault

CERTS = "Microsoft.KeyVault/vaults/certificates"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class CertificatesApi:
    def __init__(self, vault: KeyVault) -> None:
        self.vault = vault

    def routes(self) -> list[tuple[str, str, Any, str]]:
        read, update = f"{CERTS}/read", f"{CERTS}/update/action"
        return [
            ("GET", "/certificates", self.list_certificates, read),
            ("POST", "/certificates/{name}/create", self.create, f"{CERTS}/create/action"),
            ("POST", "/certificates/{name}/import", self.import_certificate, f"{CERTS}/import/action"),
            ("GET", "/certificates/{name}/pending", self.get_operation, read),
            ("PATCH", "/certificates/{name}/pending", self.cancel_operation, update),
            ("DELETE", "/certificates/{name}/pending", self.delete_operation, update),
            ("GET", "/certificates/{name}/versions", self.list_versions, read),
            ("GET", "/certificates/{name}/policy", self.get_policy, read),
            ("PATCH", "/certificates/{name}/policy", self.update_policy, update),
            ("PUT", "/certificates/{name}/policy", self.update_policy, update),
            ("DELETE", "/certificates/{name}", self.delete, f"{CERTS}/delete"),
            ("GET", "/certificates/{name}", self.get, read),
            ("GET", "/certificates/{name}/{version:[^/]*}", self.get, read),
            ("PATCH", "/certificates/{name}/{version:[^/]*}", self.update, update),
            ("GET", "/deletedcertificates", self.list_deleted, read),
            ("GET", "/deletedcertificates/{name}", self.get_deleted, read),
            ("DELETE", "/deletedcertificates/{name}", self.purge_deleted, f"{CERTS}/purge/action"),
            ("POST", "/deletedcertificates/{name}/recover", self.recover_deleted, f"{CERTS}/recover/action"),
        ]

    # --- JSON shapes ---------------------------------------------------------------------------

    def bundle(
        self, entry: CertificateEntry, version: CertificateVersion, *, with_policy: bool = True
    ) -> dict[str, Any]:
        vault = self.vault
        out: dict[str, Any] = {
            "id": vault.object_url("certificates", entry.name, version.version),
            "kid": vault.object_url("keys", entry.name, version.version),
            "sid": vault.object_url("secrets", entry.name, version.version),
            "x5t": _b64url(version.x5t),
            "cer": base64.b64encode(version.cer).decode(),
            "attributes": version.attributes.to_json(self.vault.recovery_level),
            "preserveCertOrder": False,
        }
        if version.tags is not None:
            out["tags"] = version.tags
        if with_policy:
            out["policy"] = self._policy_json(entry)
        return out

    def item(
        self, entry: CertificateEntry, version: CertificateVersion, *, versioned: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.vault.object_url("certificates", entry.name, version.version if versioned else None),
            "x5t": _b64url(version.x5t),
            "attributes": version.attributes.to_json(self.vault.recovery_level),
        }
        if version.tags is not None:
            out["tags"] = version.tags
        return out

    def _deleted_shape(self, entry: CertificateEntry, deletion: Deletion, *, item: bool) -> dict[str, Any]:
        out = self.item(entry, entry.latest, versioned=False) if item else self.bundle(entry, entry.latest)
        out["recoveryId"] = self.vault.object_url("deletedcertificates", entry.name)
        out["deletedDate"] = deletion.deleted_date
        out["scheduledPurgeDate"] = deletion.scheduled_purge_date
        return out

    def _policy_json(self, entry: CertificateEntry) -> dict[str, Any]:
        return policies.to_json(entry.policy, self.vault.object_url("certificates", entry.name) + "/policy")

    # --- lookups -------------------------------------------------------------------------------

    def _entry(self, name: str) -> CertificateEntry:
        entry = self.vault.certificates.get(name)
        if entry is None or not entry.versions:
            raise not_found("CertificateNotFound", "certificate", name)
        return entry

    def _version(self, entry: CertificateEntry, version_id: str) -> CertificateVersion:
        if not version_id:
            return entry.latest
        version = entry.versions.get(version_id)
        if version is None:
            raise not_found("CertificateNotFound", "certificate", f"{entry.name}/{version_id}")
        return version

    def _check_name_free(self, name: str) -> None:
        vault = self.vault
        if name in vault.deleted_certificates:
            raise in_deleted_state("Certificate", name)
        if name in vault.deleted_secrets:
            raise in_deleted_state("Secret", name)
        vault.check_not_purging("Certificate", name)
        secret = vault.secrets.get(name)
        if secret is not None and not secret.latest.managed:
            raise VaultError(
                409,
                "Conflict",
                f"There is a secret named '{name}' in this vault that no certificate manages.",
            )

    # --- writing a version ---------------------------------------------------------------------

    def _store(
        self, name: str, policy: dict[str, Any], material: Material, attribute_fields: dict[str, Any],
        tags: dict[str, str] | None,
    ) -> tuple[CertificateEntry, CertificateVersion]:  # fmt: skip
        entry = self.vault.certificates.get(name)
        if entry is None:
            entry = self.vault.certificates[name] = CertificateEntry(name, policy)
        else:
            entry.policy = policy
        version_id = new_version_id()
        enabled = attribute_fields.get("enabled", policy["attributes"].get("enabled", True))
        fields = {"enabled": enabled, "nbf": material.nbf, "exp": material.exp}
        attributes = Attributes()
        apply_attributes(attributes, fields)
        version = CertificateVersion(version_id, material.der, material.x5t, attributes, tags)
        entry.versions[version_id] = version
        content_type = policy["secret_props"]["contentType"]
        self.vault.secrets_api.add_version(
            entry.name, material.secret_value(content_type), content_type=content_type, tags=None,
            attribute_fields=fields, managed=True, version_id=version_id,
        )  # fmt: skip
        self.vault.new_version_created("Certificate", entry.name, version_id, attributes)
        return entry, version

    def _operation(self, name: str, issuer: str, csr: bytes | None, status: str) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "id": self.vault.object_url("certificates", name) + "/pending",
            "issuer": {"name": issuer},
            "cancellation_requested": False,
            "status": status,
            "status_details": "",
            "target": self.vault.object_url("certificates", name),
            "request_id": uuid.uuid4().hex,
        }
        if csr is not None:
            operation["csr"] = base64.b64encode(csr).decode()
        return operation

    # --- handlers ------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_json(request)
        self._check_name_free(name)
        existing = self.vault.certificates.get(name)
        raw_policy = body.get("policy")
        if raw_policy is None:
            if existing is None:
                raise bad_parameter("The policy is required to create the first version of a certificate.")
            raw_policy = existing.policy
        policy = policies.normalize(raw_policy, for_create=True)
        attribute_fields = parse_attributes(body.get("attributes"))
        tags = parse_tags(body.get("tags"))
        material = await asyncio.get_running_loop().run_in_executor(None, self_signed, policy)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(material.certificate.subject)
            .sign(material.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        entry, _ = self._store(name, policy, material, attribute_fields, tags)
        # Self-signed issuance is immediate; the create answer still reports inProgress as Key
        # Vault does, and the first GET /pending reports completed.
        entry.operation = self._operation(name, "Self", csr, "completed")
        return web.json_response({**entry.operation, "status": "inProgress"}, status=202)

    async def import_certificate(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_json(request)
        self._check_name_free(name)
        value = body.get("value")
        if not isinstance(value, str) or not value:
            raise bad_parameter("The parameter 'value' (the base64 certificate) is required.")
        password = body.get("pwd")
        material, fmt = load_import(value, password if isinstance(password, str) else None)
        policy = policies.for_import(material, fmt, body.get("policy"))
        entry, version = self._store(
            name, policy, material, parse_attributes(body.get("attributes")), parse_tags(body.get("tags"))
        )
        return web.json_response(self.bundle(entry, version))

    async def get(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        version = self._version(entry, request.match_info.get("version", ""))
        return web.json_response(self.bundle(entry, version))

    async def update(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        version = self._version(entry, request.match_info.get("version", ""))
        body = await read_json(request)
        fields = parse_attributes(body.get("attributes"))
        fields.pop("nbf", None), fields.pop("exp", None)  # the certificate decides its dates
        tags = parse_tags(body.get("tags"))
        if body.get("policy") is not None:
            entry.policy = policies.merge(entry.policy, body["policy"])
        apply_attributes(version.attributes, fields)
        if "tags" in body:
            version.tags = tags
        secret = self.vault.secrets.get(entry.name)
        if secret is not None and version.version in secret.versions and "enabled" in fields:
            apply_attributes(secret.versions[version.version].attributes, {"enabled": fields["enabled"]})
        self.vault.mark_dirty()
        return web.json_response(self.bundle(entry, version))

    async def list_certificates(self, request: web.Request) -> web.Response:
        items = [
            self.item(e, e.latest, versioned=False) for e in self.vault.certificates.values() if e.versions
        ]
        return page(request, self.vault.vault_url, items)

    async def list_versions(self, request: web.Request) -> web.Response:
        entry = self.vault.certificates.get(request.match_info["name"])
        items = [self.item(entry, v, versioned=True) for v in entry.versions.values()] if entry else []
        return page(request, self.vault.vault_url, items)

    async def get_policy(self, request: web.Request) -> web.Response:
        return web.json_response(self._policy_json(self._entry(request.match_info["name"])))

    async def update_policy(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        entry.policy = policies.merge(entry.policy, await read_json(request))
        self.vault.mark_dirty()
        return web.json_response(self._policy_json(entry))

    def _pending(self, name: str) -> CertificateEntry:
        entry = self.vault.certificates.get(name)
        if entry is None or entry.operation is None:
            raise VaultError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name}")
        return entry

    async def get_operation(self, request: web.Request) -> web.Response:
        entry = self._pending(request.match_info["name"])
        return web.json_response(entry.operation)

    async def cancel_operation(self, request: web.Request) -> web.Response:
        entry = self._pending(request.match_info["name"])
        await read_json(request)  # {"cancellation_requested": true}: too late, issuance is immediate
        return web.json_response(entry.operation)

    async def delete_operation(self, request: web.Request) -> web.Response:
        entry = self._pending(request.match_info["name"])
        operation, entry.operation = entry.operation, None
        self.vault.mark_dirty()
        return web.json_response(operation)

    async def delete(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        deletion = Deletion.now()
        del self.vault.certificates[entry.name]
        secret = self.vault.secrets.pop(entry.name, None)
        self.vault.deleted_certificates[entry.name] = (entry, secret, deletion)
        self.vault.mark_dirty()
        return web.json_response(self._deleted_shape(entry, deletion, item=False))

    def _deleted(self, name: str) -> tuple[CertificateEntry, Any, Deletion]:
        found = self.vault.deleted_certificates.get(name)
        if found is None:
            raise deleted_not_found("CertificateNotFound", "Certificate", name)
        return found

    async def list_deleted(self, request: web.Request) -> web.Response:
        items = [self._deleted_shape(e, d, item=True) for e, _, d in self.vault.deleted_certificates.values()]
        return page(request, self.vault.vault_url, items)

    async def get_deleted(self, request: web.Request) -> web.Response:
        entry, _, deletion = self._deleted(request.match_info["name"])
        return web.json_response(self._deleted_shape(entry, deletion, item=False))

    async def purge_deleted(self, request: web.Request) -> web.Response:
        entry, _, _ = self._deleted(request.match_info["name"])
        self.vault.purge(entry.name)  # 403 under purge protection
        del self.vault.deleted_certificates[entry.name]
        self.vault.mark_dirty()
        return web.Response(status=204)

    async def recover_deleted(self, request: web.Request) -> web.Response:
        entry, secret, _ = self._deleted(request.match_info["name"])
        del self.vault.deleted_certificates[entry.name]
        self.vault.certificates[entry.name] = entry
        if secret is not None:
            self.vault.secrets[entry.name] = secret
            self.vault.expiry.watch("Secret", entry.name, secret.latest.version, secret.latest.attributes.exp)
        latest = entry.latest  # its expiry entries were skipped while it was deleted
        self.vault.expiry.watch("Certificate", entry.name, latest.version, latest.attributes.exp)
        self.vault.mark_dirty()
        return web.json_response(self.bundle(entry, entry.latest))


__all__ = ["PKCS12", "CertificatesApi"]
