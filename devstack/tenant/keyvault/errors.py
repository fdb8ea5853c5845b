"""Key Vault's error shape: {"error": {"code", "message", "innererror"?}} with its codes and wording."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

NOT_FOUND_HELP = (
    "If you recently deleted this {kind} you may be able to recover it using the correct recovery command. "
    "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
)


class VaultError(Exception):
    """Raised by handlers; the vault's request wrapper turns it into Key Vault's JSON error."""

    def __init__(self, status: int, code: str, message: str, inner_code: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return error_response(self.status, self.code, self.message, self.inner_code, headers)


def error_response(
    status: int,
    code: str,
    message: str,
    inner_code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner_code:
        error["innererror"] = {"code": inner_code}
    return web.Response(
        status=status,
        body=json.dumps({"error": error}),
        content_type="application/json",
        headers=headers,
    )


def bad_parameter(message: str) -> VaultError:
    return VaultError(400, "BadParameter", message)


def not_found(code: str, kind: str, name_or_id: str) -> VaultError:
    """SecretNotFound / CertificateNotFound with Key Vault's wording."""
    return VaultError(
        404,
        code,
        f"A {kind} with (name/id) {name_or_id} was not found in this key vault. "
        + NOT_FOUND_HELP.format(kind=kind),
    )


def deleted_not_found(code: str, kind: str, name: str) -> VaultError:
    return VaultError(404, code, f"Deleted {kind} not found: {name}")


def in_deleted_state(kind: str, name: str) -> VaultError:
    return VaultError(
        409,
        "Conflict",
        f"{kind} {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
        f"in this state, the {kind.lower()} can only be recovered or purged.",
        inner_code="ObjectIsDeletedButRecoverable",
    )


def being_purged(kind: str, name: str) -> VaultError:
    """A write on a name whose purge Key Vault has not finished (purges complete asynchronously)."""
    return VaultError(
        409,
        "Conflict",
        f"{kind} {name} is currently being deleted and cannot be re-created; retry later.",
        inner_code="ObjectIsBeingDeleted",
    )


def purge_protected() -> VaultError:
    """A purge in a vault with purge protection (enablePurgeProtection: true), whoever asks."""
    return VaultError(
        403,
        "Forbidden",
        'Operation "purge" is not allowed because purge protection is enabled for this vault. '
        "Key Vault service will automatically purge it after the retention period has passed.",
    )


def forbidden_operation(operation: str, what: str) -> VaultError:
    """Key Vault's wording for operations on disabled or certificate-managed objects."""
    return VaultError(403, "Forbidden", f"Operation {operation} is not allowed on a {what}.")
