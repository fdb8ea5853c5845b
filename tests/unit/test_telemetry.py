"""functions.telemetry: console and Azure Monitor pipelines, context attributes, secret redaction."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions import telemetry
from functions.telemetry import configure_telemetry, log_context, redactor

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def console() -> Iterator[tuple[io.StringIO, _Capture]]:
    telemetry.reset_for_tests()
    stream = io.StringIO()
    state = configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": ""}, stream=stream)
    assert state.mode == "console"
    assert state.credential is None
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    telemetry.guard_handlers(root)
    try:
        yield stream, capture
    finally:
        root.removeHandler(capture)
        telemetry.reset_for_tests()


def test_console_path_writes_records_with_context(console: tuple[io.StringIO, _Capture]) -> None:
    stream, _ = console
    with log_context(registration_id="reg-42", tenant_id="tenant-7", operation="provision"):
        logging.getLogger("functions.core.provisioning.workflow").info("step %s done", "consent")
    logging.getLogger("functions.core.provisioning.workflow").info("outside any workflow")
    lines = stream.getvalue().splitlines()
    assert "step consent done [registration_id=reg-42 tenant_id=tenant-7 operation=provision]" in lines[0]
    assert lines[1].endswith("outside any workflow")


def test_configure_is_idempotent(console: tuple[io.StringIO, _Capture]) -> None:
    root_handlers = list(logging.getLogger().handlers)
    again = configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"})
    assert again.mode == "console"
    assert logging.getLogger().handlers == root_handlers


def test_context_attributes_are_on_records_and_nest(console: tuple[io.StringIO, _Capture]) -> None:
    _, capture = console
    log = logging.getLogger("functions.adapters.graph")
    with log_context(registration_id="reg-1", tenant_id="t-1", operation="rotate"):
        log.info("outer")
        with log_context(operation="verify"):
            log.info("inner")
    log.info("after")
    outer, inner, after = capture.records[-3:]
    assert (outer.registration_id, outer.tenant_id, outer.operation) == ("reg-1", "t-1", "rotate")  # type: ignore[attr-defined]
    assert (inner.registration_id, inner.operation) == ("reg-1", "verify")  # type: ignore[attr-defined]
    assert not hasattr(after, "registration_id")


def test_registered_secret_is_redacted_everywhere(console: tuple[io.StringIO, _Capture]) -> None:
    stream, capture = console
    secret = "s3cr3t+/" + secrets.token_urlsafe(24)
    url_encoded = urllib.parse.quote(secret, safe="")
    redactor.register(secret)
    log = logging.getLogger("functions.adapters.keyvault")
    log.info("issued %s for app", secret)
    log.warning("url https://x.example/?code=%s", url_encoded)
    log.info("structured", extra={"detail": f"value={secret}"})
    try:
        raise ValueError(f"Graph said: bad secret {secret}")
    except ValueError:
        log.exception("call failed")
    output = stream.getvalue()
    assert secret not in output
    assert url_encoded not in output
    assert output.count(telemetry.REDACTED) == 3  # the message, the URL-encoded form, the exception
    assert "Graph said: bad secret ***" in output  # the traceback survives, cleaned
    assert capture.records[-2].detail == "value=***"  # type: ignore[attr-defined]
    for record in capture.records[-4:]:
        assert secret not in record.getMessage()
        assert record.exc_info is None
        assert secret not in str(vars(record))


def test_secrets_are_registered_where_they_are_born(console: tuple[io.StringIO, _Capture]) -> None:
    """Not only Graph's secretText: webhook signing secrets, the registrar's own client secrets
    (home and other tenants) and a storage account key are masked should any log line slip."""
    from functions.adapters.identity import IdentityConfig
    from functions.adapters.tables import StorageConfig
    from functions.core.notification.events import new_signing_secret
    from functions.settings import Settings

    stream, _ = console
    signing = new_signing_secret().reveal()
    client_secret, other_secret = "home-" + secrets.token_urlsafe(24), "other-" + secrets.token_urlsafe(24)
    account_key = secrets.token_urlsafe(32)
    connection = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={account_key};EndpointSuffix=core.windows.net"
    values = {
        "REGISTRAR_ENVIRONMENT": "test",
        "REGISTRAR_HOME_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "REGISTRAR_CLIENT_SECRET": client_secret,
        "AzureWebJobsStorage": connection,
        "REGISTRAR_TENANT_CREDENTIALS": json.dumps(
            {"11111111-2222-3333-4444-555555555555": {"clientId": "c", "clientSecret": other_secret}}
        ),
    }
    Settings.from_env(values)
    IdentityConfig.from_env(values)

    logging.getLogger("functions.core.notification.delivery").warning(
        "slipped: %s %s %s %s", signing, client_secret, other_secret, account_key
    )

    output = stream.getvalue()
    for value in (signing, client_secret, other_secret, account_key):
        assert value not in output
    assert output.count(telemetry.REDACTED) == 4
    assert account_key not in repr(StorageConfig(connection_string=connection))


def test_short_values_and_repr_do_not_expose_or_mangle(console: tuple[io.StringIO, _Capture]) -> None:
    stream, _ = console
    redactor.register("true")  # too short to be a secret: must not blank ordinary words
    redactor.register(None)
    secret = secrets.token_hex(16)
    redactor.register(secret)
    logging.getLogger("x").info("enabled=true")
    assert "enabled=true" in stream.getvalue()
    assert secret not in repr(redactor)


_AZURE_MONITOR_PROBE = textwrap.dedent(
    """
    import json, logging, os, sys
    from functions import telemetry
    state = telemetry.configure_telemetry(dict(os.environ))
    from azure.identity import ManagedIdentityCredential
    from opentelemetry import trace, metrics
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorLogExporter, AzureMonitorMetricExporter, AzureMonitorTraceExporter)

    tracer_provider = trace.get_tracer_provider()
    span_exporters = [getattr(p, "span_exporter", None) or getattr(getattr(p, "_batch_processor", None),
                      "_exporter", None) for p in tracer_provider._active_span_processor._span_processors]
    trace_exporters = [e for e in span_exporters if isinstance(e, AzureMonitorTraceExporter)]
    logger_provider = get_logger_provider()
    log_processors = logger_provider._multi_log_record_processor._log_record_processors
    log_exporters = [getattr(p, "_exporter", None) or getattr(getattr(p, "_batch_processor", None),
                     "_exporter", None) for p in log_processors]
    readers = metrics.get_meter_provider()._metric_readers
    otel_handlers = [h for h in logging.getLogger().handlers if isinstance(h, LoggingHandler)]

    memory = InMemoryLogExporter()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    secret = "probe-secret-" + "x" * 20
    telemetry.redactor.register(secret)
    with telemetry.log_context(registration_id="reg-9", tenant_id="tenant-9", operation="provision"):
        logging.getLogger("functions.core").warning("created credential %s", secret)
    exported = [(str(r.log_record.body), dict(r.log_record.attributes or {}))
                for r in memory.get_finished_logs()]
    print(json.dumps({
        "mode": state.mode,
        "credential": type(state.credential).__name__,
        "trace_exporters": len(trace_exporters),
        "trace_credential_is_state": all(e._credential is state.credential for e in trace_exporters),
        "log_exporters": sorted(type(e).__name__ for e in log_exporters if e is not None),
        "metric_exporters": sorted(type(getattr(r, "_exporter", None)).__name__ for r in readers),
        "otel_handler_guarded": [telemetry.redactor in h.filters and telemetry.context_filter in h.filters
                                 for h in otel_handlers],
        "exported": exported,
    }))
    sys.stdout.flush()
    os._exit(0)  # skip the exit-time flush: nothing is exported anywhere
    """
)


def test_azure_monitor_path_uses_managed_identity_and_exports_nowhere() -> None:
    """configure_azure_monitor builds its providers without any network call at configure time.

    Every endpoint the probe could reach is a closed loopback port (ingestion, live metrics,
    managed identity), statsbeat and the OneSettings control plane are disabled, and the child
    exits without flushing; the timeout proves configuration does not wait on the network.
    """
    closed = "https://127.0.0.1:9/"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("APPLICATIONINSIGHTS_", "IDENTITY_", "MSI_", "AZURE_"))
    }
    env.update(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": (
                "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                f"IngestionEndpoint={closed};LiveEndpoint={closed}"
            ),
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            # The App Service / Functions managed identity endpoint, here a closed loopback port.
            "IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token",
            "IDENTITY_HEADER": "unused",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    completed = subprocess.run(
        [sys.executable, "-c", _AZURE_MONITOR_PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["mode"] == "azure_monitor"
    assert report["credential"] == "ManagedIdentityCredential"
    assert report["trace_exporters"] == 1
    assert report["trace_credential_is_state"] is True
    assert "AzureMonitorLogExporter" in report["log_exporters"]
    assert "AzureMonitorMetricExporter" in report["metric_exporters"]
    assert report["otel_handler_guarded"] == [True]
    (body, attributes), *_ = report["exported"]
    assert body == "created credential ***"
    assert attributes["registration_id"] == "reg-9"
    assert attributes["tenant_id"] == "tenant-9"
    assert attributes["operation"] == "provision"


def test_key_based_application_insights_gets_no_credential() -> None:
    assert telemetry._managed_identity_credential("") is None
    credential = telemetry._managed_identity_credential("Authorization=AAD;ClientId=1111-2222")
    assert type(credential).__name__ == "ManagedIdentityCredential"
