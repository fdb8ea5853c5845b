"""host.json as the host reads it (app-setting overrides) and the queue extension's base64 leniency."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from devstack.host.config import load_host_json
from devstack.host.queues import MessageDecodingError, decode_body


def write_host_json(tmp_path: Path) -> Path:
    path = tmp_path / "host.json"
    document = {
        "version": "2.0",
        "functionTimeout": "00:10:00",
        "extensions": {"queues": {"batchSize": 4, "maxDequeueCount": 3, "visibilityTimeout": "00:00:01"}},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_app_settings_override_host_json_values_in_any_case(tmp_path: Path) -> None:
    options = load_host_json(
        write_host_json(tmp_path),
        {
            "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "7",
            "azurefunctionsjobhost__EXTENSIONS__QUEUES__VISIBILITYTIMEOUT": "00:00:30",
            "AzureFunctionsJobHost__extensions__queues__messageEncoding": "none",  # not in host.json
            "AZUREFUNCTIONSJOBHOST__functionTimeout": "00:00:05",
            "AzureFunctionsJobHost__extensions__http__routePrefix": "v1",
            "UNRELATED": "x",
        },
    )
    assert options.queues.max_dequeue_count == 7
    assert options.queues.visibility_timeout == timedelta(seconds=30)
    assert options.queues.message_encoding == "none"
    assert options.queues.batch_size == 4  # not overridden
    assert options.function_timeout == timedelta(seconds=5)
    assert options.route_prefix == "v1"


def test_overrides_apply_without_a_host_json_and_default_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AzureFunctionsJobHost__functionTimeout", "00:01:00")
    options = load_host_json(tmp_path / "missing.json")
    assert options.function_timeout == timedelta(minutes=1)
    assert load_host_json(write_host_json(tmp_path), {}).function_timeout == timedelta(minutes=10)


def test_base64_with_line_breaks_and_spaces_decodes_as_dotnet_does() -> None:
    assert decode_body("aGVs\r\nbG8g d29y\tbGQ=\n", "base64") == b"hello world"
    with pytest.raises(MessageDecodingError):
        decode_body("not base64!", "base64")
    with pytest.raises(MessageDecodingError):
        decode_body("aGVs*bG8=", "base64")
