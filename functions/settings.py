"""One frozen Settings object, read from the environment once per process.

Names and local defaults: local.settings.sample.json (Values). In Azure they are app settings
(infra/bicep keeps them in sync with that file). A bad value raises SettingsError naming the
setting and never quoting a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

from functions.core.durations import parse_duration
from functions.core.models import SecretValue


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    environment: str
    storage_connection: str = field(repr=False)  # may hold an account key
    home_tenant_id: str
    authority_host: str
    graph_base_url: str
    key_vault_url: str
    credential_mode: str
    client_id: str | None
    client_secret: SecretValue | None
    rotation_schedule: str
    rotation_lead_time: timedelta
    rotation_lifetime_fraction: float
    rotation_overlap: timedelta
    default_credential_lifetime: timedelta
    max_credential_lifetime: timedelta
    webhook_allow_insecure_local: bool
    verify_timeout: timedelta
    # Every value as read, for the parts that parse their own (policy, identity): never logged.
    values: Mapping[str, str] = field(repr=False, default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.environment.lower() in ("local", "devstack", "test")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        values = dict(os.environ if env is None else env)

        def text(name: str, default: str = "") -> str:
            return (values.get(name) or default).strip()

        def duration(name: str, default: str) -> timedelta:
            raw = text(name, default)
            try:
                return parse_duration(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None

        def flag(name: str, default: bool) -> bool:
            raw = text(name)
            return default if not raw else raw.lower() in ("1", "true", "yes", "on")

        fraction_text = text("REGISTRAR_ROTATION_LIFETIME_FRACTION", "0.66")
        try:
            fraction = float(fraction_text)
        except ValueError:
            raise SettingsError("REGISTRAR_ROTATION_LIFETIME_FRACTION: not a number") from None
        if not 0 < fraction < 1:
            raise SettingsError("REGISTRAR_ROTATION_LIFETIME_FRACTION: must be between 0 and 1")
        secret = values.get("REGISTRAR_CLIENT_SECRET") or ""
        settings = cls(
            environment=text("REGISTRAR_ENVIRONMENT", "production"),
            storage_connection=text("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            home_tenant_id=text("REGISTRAR_HOME_TENANT_ID"),
            authority_host=text("REGISTRAR_AUTHORITY_HOST", "https://login.microsoftonline.com").rstrip("/"),
            graph_base_url=text("REGISTRAR_GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0").rstrip("/"),
            key_vault_url=text("REGISTRAR_KEY_VAULT_URL").rstrip("/"),
            credential_mode=text("REGISTRAR_CREDENTIAL", "managed_identity").lower(),
            client_id=text("REGISTRAR_CLIENT_ID") or None,
            client_secret=SecretValue(secret) if secret else None,
            rotation_schedule=text("REGISTRAR_ROTATION_SCHEDULE", "0 */15 * * * *"),
            rotation_lead_time=duration("REGISTRAR_ROTATION_LEAD_TIME", "P30D"),
            rotation_lifetime_fraction=fraction,
            rotation_overlap=duration("REGISTRAR_ROTATION_OVERLAP", "P1D"),
            default_credential_lifetime=duration("REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME", "P180D"),
            max_credential_lifetime=duration("REGISTRAR_MAX_CREDENTIAL_LIFETIME", "P730D"),
            webhook_allow_insecure_local=flag("REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL", False),
            verify_timeout=duration("REGISTRAR_VERIFY_TIMEOUT", "PT10M"),
            values=values,
        )
        if settings.default_credential_lifetime > settings.max_credential_lifetime:
            raise SettingsError(
                "REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME is longer than REGISTRAR_MAX_CREDENTIAL_LIFETIME"
            )
        return settings


@cache
def get_settings() -> Settings:
    """The process's settings (read on first use; tests build their own with Settings.from_env)."""
    return Settings.from_env()
