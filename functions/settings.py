"""One frozen Settings object, read from the environment once per process.

Names and local defaults: local.settings.sample.json (Values). In Azure they are app settings
(infra/bicep keeps them in sync with that file). A bad value raises SettingsError naming the
setting and never quoting a secret; every bad value is named at once. Outside local development
(REGISTRAR_ENVIRONMENT local/devstack/test) the home tenant and an https Key Vault URL are required
and REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL=true is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

from functions.core.catalogue.policy import (
    INSECURE_WEBHOOKS_OUTSIDE_LOCAL,
    TRUE_WORDS,
    is_local_environment,
    setting_flag,
)
from functions.core.escalation.at_risk import EscalationSettings
from functions.core.record.durations import parse_duration
from functions.core.record.models import SecretValue
from functions.telemetry import redactor

LONGEST_RETRY_DELAY = timedelta(days=6)
GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
HTTPS_URL = re.compile(r"^https://[^\s/?#@]+(?:/[^\s?#]*)?$")
ACCOUNT_KEY = re.compile(r"AccountKey=([^;]+)", re.IGNORECASE)


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
    inventory_schedule: str
    # The resume sweep's NCRONTAB schedule (a binding expression, as the rotation schedule).
    resume_schedule: str
    rotation_lead_time: timedelta
    rotation_lifetime_fraction: float
    rotation_overlap: timedelta
    default_credential_lifetime: timedelta
    max_credential_lifetime: timedelta
    webhook_allow_insecure_local: bool
    verify_timeout: timedelta
    # How long a registration may stay accepted/provisioning/failing before the timer ends it.
    provisioning_deadline: timedelta = timedelta(hours=1)
    # Delays between a failed webhook delivery's attempts; empty: the built-in schedule.
    webhook_retry_schedule: tuple[timedelta, ...] = ()
    # App Service Authentication (Easy Auth) runs in front of the app: the platform sets
    # WEBSITE_AUTH_ENABLED=True, and then X-MS-CLIENT-PRINCIPAL comes from it, never from the caller.
    easy_auth_enabled: bool = False
    # Graph's published throttling budgets times this (graph_pacing.py). Always 1 against Microsoft
    # Graph; the local tenant's throttleScale shrinks its budgets for tests and benchmarks.
    graph_budget_scale: float = 1.0
    # The deployment granted Application.ReadWrite.All (Bicep adoptionTakesOwnership): an adoption
    # makes Registrar an owner of the app itself instead of waiting for a person (docs/adoption.md).
    adoption_takes_ownership: bool = False
    # Every value as read, for the parts that parse their own (policy, identity): never logged.
    values: Mapping[str, str] = field(repr=False, default_factory=dict)

    @property
    def is_local(self) -> bool:
        return is_local_environment(self.environment)

    @property
    def client_principal_trusted(self) -> bool:
        """Whether X-MS-CLIENT-PRINCIPAL may carry app roles: behind Easy Auth, or in local development
        (the local host passes the header through, as `func start` does)."""
        return self.easy_auth_enabled or self.is_local

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        values = dict(os.environ if env is None else env)
        problems: list[str] = []

        def text(name: str, default: str = "") -> str:
            return (values.get(name) or default).strip()

        def duration(name: str, default: str) -> timedelta:
            raw = text(name, default)
            try:
                return parse_duration(raw)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                return parse_duration(default)

        def durations(name: str) -> tuple[timedelta, ...]:
            parts = [part.strip() for part in text(name).split(",") if part.strip()]
            try:
                schedule = tuple(parse_duration(part) for part in parts)
            except ValueError as exc:
                problems.append(f"{name}: {exc} (expected comma-separated ISO 8601 durations)")
                return ()
            if any(delay <= timedelta(0) for delay in schedule):
                problems.append(f"{name}: every delay must be longer than zero")
                return ()
            return schedule

        def flag(name: str, default: bool) -> bool:
            try:
                return setting_flag(name, values.get(name), default)
            except ValueError as exc:
                problems.append(str(exc))
                return default

        fraction_text = text("REGISTRAR_ROTATION_LIFETIME_FRACTION", "0.66")
        fraction = 0.66
        try:
            fraction = float(fraction_text)
        except ValueError:
            problems.append("REGISTRAR_ROTATION_LIFETIME_FRACTION: not a number")
        else:
            if not 0 < fraction < 1:
                problems.append("REGISTRAR_ROTATION_LIFETIME_FRACTION: must be between 0 and 1")
        scale_text = text("REGISTRAR_GRAPH_BUDGET_SCALE", "1")
        scale = 1.0
        try:
            scale = float(scale_text)
        except ValueError:
            problems.append("REGISTRAR_GRAPH_BUDGET_SCALE: not a number")
        else:
            if not 0 < scale <= 1:
                problems.append("REGISTRAR_GRAPH_BUDGET_SCALE: must be above 0 and at most 1")
        secret = values.get("REGISTRAR_CLIENT_SECRET") or ""
        redactor.register(secret)  # a slip into any log line is masked
        for account_key in ACCOUNT_KEY.findall(text("AzureWebJobsStorage")):
            redactor.register(account_key)
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
            inventory_schedule=text("REGISTRAR_INVENTORY_SCHEDULE", "0 30 2 * * *"),
            resume_schedule=text("REGISTRAR_RESUME_SCHEDULE", "*/15 * * * * *"),
            rotation_lead_time=duration("REGISTRAR_ROTATION_LEAD_TIME", "P30D"),
            rotation_lifetime_fraction=fraction,
            rotation_overlap=duration("REGISTRAR_ROTATION_OVERLAP", "P1D"),
            default_credential_lifetime=duration("REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME", "P180D"),
            max_credential_lifetime=duration("REGISTRAR_MAX_CREDENTIAL_LIFETIME", "P730D"),
            webhook_allow_insecure_local=flag("REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL", False),
            verify_timeout=duration("REGISTRAR_VERIFY_TIMEOUT", "PT10M"),
            provisioning_deadline=duration("REGISTRAR_PROVISIONING_DEADLINE", "PT1H"),
            webhook_retry_schedule=durations("REGISTRAR_WEBHOOK_RETRY_SCHEDULE"),
            adoption_takes_ownership=flag("REGISTRAR_ADOPTION_TAKES_OWNERSHIP", False),
            # The platform's own value ("True"/"False"): anything else is not enabled (fail closed).
            easy_auth_enabled=text("WEBSITE_AUTH_ENABLED").lower() in TRUE_WORDS,
            graph_budget_scale=scale,
            values=values,
        )
        flag("REGISTRAR_CUSTOM_REQUIRES_APPROVAL", False)  # the Policy's (bootstrap); checked here at startup
        try:  # escalation's (bootstrap): REGISTRAR_AT_RISK_WINDOW, ..._FAILURES_BEFORE_ALERT, _SIGN_IN_PROOF
            EscalationSettings.from_values(values)
        except ValueError as exc:
            problems.append(str(exc))
        problems.extend(settings._problems())
        if problems:
            raise SettingsError("; ".join(problems))
        return settings

    def _problems(self) -> list[str]:
        """What is wrong with values that each parsed: their combination, and what Azure needs."""
        problems: list[str] = []
        if self.provisioning_deadline <= timedelta(0):
            problems.append("REGISTRAR_PROVISIONING_DEADLINE: must be longer than zero")
        if self.default_credential_lifetime > self.max_credential_lifetime:
            problems.append(
                "REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME is longer than REGISTRAR_MAX_CREDENTIAL_LIFETIME"
            )
        if self.home_tenant_id and not GUID.fullmatch(self.home_tenant_id):
            problems.append("REGISTRAR_HOME_TENANT_ID: expected a tenant id (GUID)")
        if any(delay >= LONGEST_RETRY_DELAY for delay in self.webhook_retry_schedule):
            # A retry waits hidden on the queue, whose messages live 7 days from when they were sent.
            problems.append("REGISTRAR_WEBHOOK_RETRY_SCHEDULE: each delay must be shorter than 6 days")
        if self.is_local:
            return problems
        if not self.home_tenant_id:
            problems.append("REGISTRAR_HOME_TENANT_ID: required outside local development (a tenant id GUID)")
        if not HTTPS_URL.fullmatch(self.key_vault_url):
            problems.append(
                "REGISTRAR_KEY_VAULT_URL: required outside local development, as an https URL "
                "(https://<vault>.vault.azure.net)"
            )
        if self.webhook_allow_insecure_local:
            problems.append(INSECURE_WEBHOOKS_OUTSIDE_LOCAL)
        return problems


@cache
def get_settings() -> Settings:
    """The process's settings (read on first use; tests build their own with Settings.from_env)."""
    return Settings.from_env()
