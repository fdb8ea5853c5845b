"""Settings from local.settings.json are in force before the app (and aiohttp) load."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from devstack.host.launcher import start_host
from tests.devstack.harness import SAMPLE_APP, http, write_settings
from tests.fixtures.tenant import TenantProcess


def test_ca_from_local_settings_is_trusted_by_aiohttp_in_a_function(
    tenant: TenantProcess, tmp_path: Path
) -> None:
    settings = write_settings(
        tmp_path / "local.settings.json",
        {
            "SSL_CERT_FILE": tenant.ca_file,  # the only place the host learns about the tenant's CA
            "REQUESTS_CA_BUNDLE": tenant.ca_file,
            "SAMPLE_QUEUE": "unused",
            "SAMPLE_SCHEDULE": "0 0 0 1 1 *",
            "SAMPLE_SLOW_SCHEDULE": "0 0 0 1 1 *",
            "AzureWebJobs.work_queue.Disabled": "true",
            "AzureWebJobs.plain_text.Disabled": "true",
            "AzureWebJobs.every_second.Disabled": "true",
            "AzureWebJobs.slow_timer.Disabled": "true",
        },
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
    discovery = f"{tenant.authority}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration"
    with start_host(SAMPLE_APP, settings_file=settings, state_dir=tmp_path / "state", env=env) as host:
        status, _, body = http("GET", f"{host.url}/api/fetch?url={urllib.parse.quote(discovery, safe='')}")
    assert (status, body) == (200, b"200")
