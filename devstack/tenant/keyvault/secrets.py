"""Key Vault secrets: /secrets and /deletedsecrets (REST API 7.x as azure-keyvault-secrets speaks it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .common import (
    apply_attributes,
    new_attributes,
    page,
    parse_attributes,
    parse_content_type,
    parse_tags,
    read_json,
)
from .errors import bad_parameter, deleted_not_found, forbidden_operation, in_deleted_state, not_found
from .model import Deletion, SecretEntry, SecretVersion, new_version_id

if TYPE_CHECKING:
    from .vault import KeyVault

MAX_VALUE_BYTES = 25 * 1024
SECRETS = "Microsoft.KeyVault/vaults/secrets"


class SecretsApi:
    def __init__(self, vault: KeyVault) -> None:
        self.vault = vault

    def routes(self) -> list[tuple[str, str, Any, str]]:
        """(method, path, handler, data action); order matters: literal segments first."""
        return [
            ("GET", "/secrets", self.list_secrets, f"{SECRETS}/readMetadata/action"),
            ("GET", "/secrets/{name}/versions", self.list_versions, f"{SECRETS}/readMetadata/action"),
            ("PUT", "/secrets/{name}", self.set_secret, f"{SECRETS}/setSecret/action"),
            ("DELETE", "/secrets/{name}", self.delete_secret, f"{SECRETS}/delete"),
            ("GET", "/secrets/{name}", self.get_secret, f"{SECRETS}/getSecret/action"),
            ("GET", "/secrets/{name}/{version:[^/]*}", self.get_secret, f"{SECRETS}/getSecret/action"),
            ("PATCH", "/secrets/{name}/{version:[^/]*}", self.update_secret, f"{SECRETS}/update/action"),
            ("GET", "/deletedsecrets", self.list_deleted, f"{SECRETS}/readMetadata/action"),
            ("GET", "/deletedsecrets/{name}", self.get_deleted, f"{SECRETS}/readMetadata/action"),
            ("DELETE", "/deletedsecrets/{name}", self.purge_deleted, f"{SECRETS}/purge/action"),
            ("POST", "/deletedsecrets/{name}/recover", self.recover_deleted, f"{SECRETS}/recover/action"),
        ]

    # --- JSON shapes ---------------------------------------------------------------------------

    def bundle(self, name: str, version: SecretVersion, *, with_value: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if with_value:
            out["value"] = version.value
        out["id"] = self.vault.object_url("secrets", name, version.version)
        if version.content_type is not None:
            out["contentType"] = version.content_type
        out["attributes"] = version.attributes.to_json(self.vault.recovery_level)
        if version.tags is not None:
            out["tags"] = version.tags
        if version.managed:
            out["kid"] = self.vault.object_url("keys", name, version.version)
            out["managed"] = True
        return out

    def item(self, name: str, version: SecretVersion, *, versioned: bool) -> dict[str, Any]:
        out = self.bundle(name, version, with_value=False)
        out.pop("kid", None)
        if not versioned:
            out["id"] = self.vault.object_url("secrets", name)
        return out

    def deleted_bundle(self, entry: SecretEntry, deletion: Deletion, *, item: bool = False) -> dict[str, Any]:
        shape = (
            self.item(entry.name, entry.latest, versioned=False)
            if item
            else self.bundle(entry.name, entry.latest, with_value=False)
        )
        shape["recoveryId"] = self.vault.object_url("deletedsecrets", entry.name)
        shape["deletedDate"] = deletion.deleted_date
        shape["scheduledPurgeDate"] = deletion.scheduled_purge_date
        return shape

    # --- the operations ------------------------------------------------------------------------

    def add_version(
        self, name: str, value: str, *, content_type: str | None, tags: dict[str, str] | None,
        attribute_fields: dict[str, Any], managed: bool = False, version_id: str | None = None,
    ) -> SecretVersion:  # fmt: skip
        """Store a new version (also used by certificates for their backing secret) and emit its event."""
        # The attributes are checked (exp after nbf, ...) before the name exists: a refused PUT
        # leaves no entry behind, as in Key Vault (an entry without versions answered 500 ever after).
        version = SecretVersion(
            version=version_id or new_version_id(),
            value=value,
            attributes=new_attributes(attribute_fields),
            content_type=content_type,
            tags=tags,
            managed=managed,
        )
        entry = self.vault.secrets.get(name)
        if entry is None:
            entry = self.vault.secrets[name] = SecretEntry(name)
        entry.versions[version.version] = version
        self.vault.new_version_created("Secret", entry.name, version.version, version.attributes)
        return version

    def _entry(self, name: str) -> SecretEntry:
        entry = self.vault.secrets.get(name)
        if entry is None:
            raise not_found("SecretNotFound", "secret", name)
        return entry

    def _version(self, entry: SecretEntry, version_id: str) -> SecretVersion:
        if not version_id:
            return entry.latest
        version = entry.versions.get(version_id)
        if version is None:
            raise not_found("SecretNotFound", "secret", f"{entry.name}/{version_id}")
        return version

    async def set_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_json(request)
        if name in self.vault.deleted_secrets or name in self.vault.deleted_certificates:
            raise in_deleted_state("Secret", name)  # a deleted certificate's backing secret holds it too
        self.vault.check_not_purging("Secret", name)
        existing = self.vault.secrets.get(name)
        if existing is not None and existing.latest.managed:
            raise forbidden_operation("set", "managed secret")
        value = body.get("value")
        if not isinstance(value, str):
            raise bad_parameter("The parameter 'value' is required and must be a string.")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise bad_parameter(f"The secret value exceeds the maximum size of {MAX_VALUE_BYTES} bytes.")
        version = self.add_version(
            name,
            value,
            content_type=parse_content_type(body.get("contentType")),
            tags=parse_tags(body.get("tags")),
            attribute_fields=parse_attributes(body.get("attributes")),
        )
        stored_name = self.vault.secrets[name].name  # as first written (names are case-insensitive)
        return web.json_response(self.bundle(stored_name, version, with_value=True))

    async def get_secret(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        version = self._version(entry, request.match_info.get("version", ""))
        if not version.attributes.enabled:
            raise forbidden_operation("get", "disabled secret")
        return web.json_response(self.bundle(entry.name, version, with_value=True))

    async def update_secret(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        version = self._version(entry, request.match_info.get("version", ""))
        body = await read_json(request)
        if version.managed:
            raise forbidden_operation("update", "managed secret")
        content_type = parse_content_type(body.get("contentType"))
        tags = parse_tags(body.get("tags"))
        fields = parse_attributes(body.get("attributes"))
        old_exp = version.attributes.exp
        apply_attributes(version.attributes, fields)
        if "contentType" in body:
            version.content_type = content_type
        if "tags" in body:
            version.tags = tags
        if version.attributes.exp != old_exp:
            version.near_expiry_sent = version.expired_sent = False
            self.vault.expiry.watch("Secret", entry.name, version.version, version.attributes.exp)
        self.vault.mark_dirty()
        return web.json_response(self.bundle(entry.name, version, with_value=False))

    async def list_secrets(self, request: web.Request) -> web.Response:
        items = [self.item(e.name, e.latest, versioned=False) for e in self.vault.secrets.values()]
        return page(request, self.vault.vault_url, items)

    async def list_versions(self, request: web.Request) -> web.Response:
        entry = self.vault.secrets.get(request.match_info["name"])
        versions = list(entry.versions.values()) if entry else []
        items = [self.item(entry.name, v, versioned=True) for v in versions] if entry else []
        return page(request, self.vault.vault_url, items)

    async def delete_secret(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        if entry.latest.managed:
            raise forbidden_operation("delete", "managed secret")
        deletion = Deletion.now()
        del self.vault.secrets[entry.name]
        self.vault.deleted_secrets[entry.name] = (entry, deletion)
        self.vault.mark_dirty()
        return web.json_response(self.deleted_bundle(entry, deletion))

    def _deleted(self, name: str) -> tuple[SecretEntry, Deletion]:
        found = self.vault.deleted_secrets.get(name)
        if found is None:
            raise deleted_not_found("SecretNotFound", "Secret", name)
        return found

    async def list_deleted(self, request: web.Request) -> web.Response:
        items = [self.deleted_bundle(e, d, item=True) for e, d in self.vault.deleted_secrets.values()]
        return page(request, self.vault.vault_url, items)

    async def get_deleted(self, request: web.Request) -> web.Response:
        entry, deletion = self._deleted(request.match_info["name"])
        return web.json_response(self.deleted_bundle(entry, deletion))

    async def purge_deleted(self, request: web.Request) -> web.Response:
        entry, _ = self._deleted(request.match_info["name"])
        self.vault.purge(entry.name)  # 403 under purge protection
        del self.vault.deleted_secrets[entry.name]
        self.vault.mark_dirty()
        return web.Response(status=204)

    async def recover_deleted(self, request: web.Request) -> web.Response:
        entry, _ = self._deleted(request.match_info["name"])
        del self.vault.deleted_secrets[entry.name]
        self.vault.secrets[entry.name] = entry
        latest = entry.latest  # its expiry entries were skipped while it was deleted
        self.vault.expiry.watch("Secret", entry.name, latest.version, latest.attributes.exp)
        self.vault.mark_dirty()
        return web.json_response(self.bundle(entry.name, entry.latest, with_value=False))
