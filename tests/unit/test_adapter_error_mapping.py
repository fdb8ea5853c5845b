"""SDK failures that are really transient (nobody answered) must not become PermanentError: a
permanent verification failure makes the rotator abandon the new credential, a permanent Key
Vault or Graph failure records the registration as failed."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.identity import CredentialUnavailableError

from functions.adapters.graph_errors import describe, to_core_error
from functions.adapters.identity import _probe_error
from functions.adapters.keyvault import _vault_error
from functions.core.record.errors import PermanentError, TransientError


def wrapped(inner: BaseException) -> ClientAuthenticationError:
    """What azure-identity's wrap_exceptions raises: a status-less ClientAuthenticationError."""
    try:
        try:
            raise inner
        except Exception as ex:
            raise ClientAuthenticationError(message=f"Authentication failed: {ex}") from ex
    except ClientAuthenticationError as outer:
        return outer


UNANSWERED_TOKEN_ENDPOINT = [
    ServiceResponseError("Connection reset by peer"),
    ServiceResponseTimeoutError("Read timed out"),
    ServiceRequestError("Cannot connect to host"),
    TimeoutError(),
    wrapped(ServiceResponseTimeoutError("Read timed out")),
]


@pytest.mark.parametrize("error", UNANSWERED_TOKEN_ENDPOINT, ids=lambda e: type(e).__name__)
def test_a_token_endpoint_that_did_not_answer_says_nothing_about_the_new_credential(
    error: BaseException,
) -> None:
    assert isinstance(_probe_error(error, "tenant", "client"), TransientError)


@pytest.mark.parametrize("code", ["7000215", "7000222", "700016", "700027"])
def test_what_entra_answers_while_a_new_credential_propagates_is_transient(code: str) -> None:
    """7000222 ("expired") included: Entra has been seen answering it for secrets minutes old."""
    waiting = _probe_error(ClientAuthenticationError(message=f"AADSTS{code}: ..."), "tenant", "client")
    assert isinstance(waiting, TransientError) and f"AADSTS{code}" in str(waiting)


def test_a_token_endpoint_refusal_is_still_permanent() -> None:
    refused = _probe_error(
        ClientAuthenticationError(message="AADSTS7000112: Application 'client' is disabled."),
        "tenant",
        "client",
    )
    assert isinstance(refused, PermanentError) and refused.code == "AADSTS7000112"
    unknown = _probe_error(ValueError("bad key"), "tenant", "client")
    assert isinstance(unknown, PermanentError)


REGISTRAR_TOKEN_HICCUPS = [
    CredentialUnavailableError(message="ManagedIdentityCredential authentication unavailable, no response"),
    ClientAuthenticationError(message="DefaultAzureCredential failed to retrieve a token"),
    ServiceResponseError("Connection reset by peer"),
]


@pytest.mark.parametrize("error", REGISTRAR_TOKEN_HICCUPS, ids=lambda e: type(e).__name__)
def test_key_vault_calls_without_a_registrar_token_yet_are_transient(error: BaseException) -> None:
    assert isinstance(_vault_error(error, "get secret", "reg-1"), TransientError)


@pytest.mark.parametrize("error", REGISTRAR_TOKEN_HICCUPS[:2], ids=lambda e: type(e).__name__)
def test_graph_calls_without_a_registrar_token_yet_are_transient(error: BaseException) -> None:
    failure = describe(error)
    assert failure is not None
    assert isinstance(to_core_error(failure, "get", "application", "x"), TransientError)


def test_an_entra_refusal_of_the_registrar_stays_permanent() -> None:
    refusal = ClientAuthenticationError(message="AADSTS700213: No matching federated identity record found")
    vault = _vault_error(refusal, "get secret", "reg-1")
    assert isinstance(vault, PermanentError) and vault.code == "RegistrarTokenRefused"
    failure = describe(refusal)
    assert failure is not None
    graph = to_core_error(failure, "get", "application", "x")
    assert isinstance(graph, PermanentError) and graph.code == "RegistrarTokenRefused"
