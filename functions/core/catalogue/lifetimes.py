"""End dates of new credentials, decided when each one is issued (first, and at every rotation).

The lifetime the registration asked for (its plan, validated at intake) is capped again at issue
time by what applies NOW: the configured maximum (REGISTRAR_MAX_CREDENTIAL_LIFETIME), the profile's
maximum for the credential type, and the tenant's app management policy (Entra refuses a longer
credential with 400 CredentialInvalidLifetimeAsPerAppPolicy). So lowering a maximum applies to
existing registrations at their next rotation, and a tenant policy never turns rotation into a
permanent failure.

Certificates are made by Key Vault, whose self-signed policy takes whole calendar months
(CertificatePolicy.validity_in_months; there is no validity in days): a certificate gets the most
months whose span fits before the capped end date, counting leap days (24 months from 2027-03-01
span 731 days, more than a 730-day cap, so it gets 23).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import datetime, timedelta

from functions.core.catalogue.policy import Policy, credential_end
from functions.core.catalogue.profiles import Profile
from functions.core.ports import Directory
from functions.core.record.errors import PermanentError
from functions.core.record.models import CredentialType
from functions.core.record.registration import Registration

ProfileLookup = Callable[[str], Profile | None]
# Key Vault stamps notBefore when it makes the certificate, a little after the registrar computed
# the start; a month counted from a day later may be a day longer (January 31 -> February 1).
_START_SLACK = timedelta(days=1)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months later (clamped to the month's last day), as Key Vault."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def certificate_months(start: datetime, end: datetime) -> int:
    """The most whole months of certificate validity that end by `end`, whenever in the next day
    Key Vault starts it. PermanentError when not even one month fits: Key Vault cannot issue a
    shorter certificate, and Entra would refuse a longer one than the cap."""
    months = 0
    while all(add_months(s, months + 1) - s <= end - start for s in (start, start + _START_SLACK)):
        months += 1
        if months >= 1200:
            break
    if months == 0:
        raise PermanentError(
            f"a certificate must be valid for at least a month (Key Vault's validity is in whole months), "
            f"but the maximum lifetime here is {end - start}",
            code="CertificateLifetimeTooShort",
        )
    return months


class CredentialLifetimes:
    """policy: the configured default and maximum; profiles: profile id -> Profile (None: unknown)."""

    def __init__(
        self, *, directory: Directory, policy: Policy | None = None, profiles: ProfileLookup | None = None
    ) -> None:
        self._directory = directory
        self._policy = policy or Policy()
        self._profiles = profiles

    @property
    def policy(self) -> Policy:
        return self._policy

    async def end(self, record: Registration, kind: CredentialType, start: datetime) -> datetime:
        """End of a new credential of `kind` for `record` starting at `start`."""
        tenant_max = await self._directory.credential_lifetime_limit(record.tenant_id, kind)
        requested = record.plan.credential.lifetime
        profile = self._profiles(record.profile_id) if self._profiles is not None else None
        if profile is not None:
            return credential_end(start, requested, profile, self._policy, tenant_max, credential_type=kind)
        caps = [self._policy.max_credential_lifetime]
        if tenant_max is not None and tenant_max > timedelta(0):
            caps.append(tenant_max)
        return start + min(requested or self._policy.default_credential_lifetime, *caps)

    async def certificate_validity(self, record: Registration, start: datetime) -> int:
        """validity_in_months for a new certificate of `record` made now."""
        return certificate_months(start, await self.end(record, CredentialType.CERTIFICATE, start))
