"""Which storage a queue trigger's `connection` names, as the Functions host reads it: a connection
string, or an identity-based connection signed in with the process's managed identity."""

from __future__ import annotations

import inspect

import pytest
from azure.identity.aio import ManagedIdentityCredential

from devstack.host.config import ConfigError
from devstack.host.functions import FunctionInfo
from devstack.host.queues import queue_service_for

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)


def trigger(connection: str | None = None) -> FunctionInfo:
    binding = {"type": "queueTrigger", "name": "msg", "queueName": "work"}
    if connection:
        binding["connection"] = connection
    return FunctionInfo(
        "work",
        binding,
        (binding,),
        lambda msg: None,
        False,
        dict(inspect.signature(lambda msg: None).parameters),
    )


def test_a_connection_string_setting_wins() -> None:
    service = queue_service_for(
        trigger(), {"AzureWebJobsStorage": AZURITE, "AzureWebJobsStorage__queueServiceUri": "https://x"}
    )
    assert service.url.startswith("http://127.0.0.1:10001/devstoreaccount1")
    assert not isinstance(service.credential, ManagedIdentityCredential)


def test_an_identity_based_connection_uses_the_managed_identity() -> None:
    environ = {
        "MyStorage__queueServiceUri": "https://127.0.0.1:10001/devstoreaccount1",
        "MyStorage__credential": "managedidentity",
        "MyStorage__clientId": "11111111-2222-3333-4444-555555555555",
    }
    service = queue_service_for(trigger("MyStorage"), environ)
    assert service.url.startswith("https://127.0.0.1:10001/devstoreaccount1")
    assert isinstance(service.credential, ManagedIdentityCredential)
    by_account = queue_service_for(
        trigger(), {"AzureWebJobsStorage": "", "AzureWebJobsStorage__accountName": "stregistrar"}
    )
    assert by_account.url.startswith("https://stregistrar.queue.core.windows.net")


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"AzureWebJobsStorage": ""},
        {
            "AzureWebJobsStorage__queueServiceUri": "https://q",
            "AzureWebJobsStorage__credential": "connectionstring",
        },
    ],
)
def test_a_missing_or_unsupported_connection_is_refused_at_start(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
        queue_service_for(trigger(), environ)
