"""Where a webhook may point, decided before any DNS lookup (registration intake uses this)."""

from __future__ import annotations

import pytest

from functions.core.catalogue.policy import Policy
from functions.core.catalogue.webhook_hosts import host_problem

STRICT = Policy(allow_insecure_webhooks=False)
LOCAL = Policy(allow_insecure_webhooks=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.5:8443/x",
        "https://169.254.169.254/metadata",
        "https://[::ffff:10.0.0.5]/x",
        "https://[fe80::1%25eth0]/x",
        "https://127.0.0.1/x",
        "https://[2002:a9fe:a9fe::1]/x",
        "https://100.64.0.1/x",
    ],
)
def test_a_non_public_address_literal_is_refused_at_intake(url: str) -> None:
    problem = STRICT.webhook_url_problem(url)
    assert problem is not None and "public address" in problem


def test_local_development_allows_loopback_literals_and_nothing_else_private() -> None:
    assert LOCAL.webhook_url_problem("http://127.0.0.1:9000/hook") is None
    assert LOCAL.webhook_url_problem("https://[::1]:9000/hook") is None
    assert LOCAL.webhook_url_problem("https://10.0.0.5/hook") is not None


@pytest.mark.parametrize("host", ["a" * 64 + ".example.com", "exa_mple..example.com", "x." * 127 + "com"])
def test_a_malformed_host_name_is_refused(host: str) -> None:
    assert host_problem(host, allow_loopback=False) is not None
    assert STRICT.webhook_url_problem(f"https://{host}/hook") is not None


@pytest.mark.parametrize("host", ["hooks.example.com", "hooks.example.com.", "bücher.example", "8.8.8.8"])
def test_public_names_and_addresses_pass(host: str) -> None:
    assert STRICT.webhook_url_problem(f"https://{host}/hook") is None
