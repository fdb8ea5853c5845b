"""What the host reads before it loads an app: local.settings.json Values and host.json."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger("devstack.host")

_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")
OVERRIDE_PREFIX = "AzureFunctionsJobHost__"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


class ConfigError(Exception):
    """A setting or host.json value the real host would also refuse at start."""


def load_settings(path: Path | None) -> dict[str, str]:
    """The "Values" of a local.settings.json, as strings (missing file: no values)."""
    if path is None or not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    values = document.get("Values") or {}
    return {str(key): "" if value is None else str(value) for key, value in values.items()}


def export_settings(values: Mapping[str, str], environ: MutableMapping[str, str] = os.environ) -> None:
    """Put the settings into the environment; as Core Tools do, existing variables win."""
    for key, value in values.items():
        if environ.get(key):
            if environ[key] != value:
                log.info("Skipping '%s' from local settings as it's already defined in the environment.", key)
            continue
        environ[key] = value


def export_app_settings(app_dir: Path, settings_file: Path | None) -> dict[str, str]:
    """Export the app's settings (local.settings.json, else the sample next to it) to os.environ;
    returns the Values read.

    Call it before anything imports aiohttp: aiohttp builds its default SSL context at import,
    reading SSL_CERT_FILE then, so a CA given only in the settings would otherwise come too late.
    """
    path = settings_file or app_dir / "local.settings.json"
    if not path.exists():
        sample = app_dir / "local.settings.sample.json"
        log.warning("%s not found; using %s", path, sample.name if sample.exists() else "no settings")
        path = sample
    values = load_settings(path)
    export_settings(values)
    return values


def resolve(expression: str, environ: Mapping[str, str] = os.environ) -> str:
    """Resolve %SETTING% binding expressions; an unknown setting fails like the host's indexing."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"'%{name}%' does not resolve to a value (no app setting named {name!r})")
        return environ[name]

    return _SETTING_EXPRESSION.sub(lookup, expression)


def parse_timespan(text: str) -> timedelta:
    """A .NET TimeSpan as host.json writes it: [d.]hh:mm[:ss[.fffffff]]."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise ConfigError(f"not a TimeSpan: {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds or 0),
        microseconds=int((fraction or "0").ljust(7, "0")[:6]),
    )


@dataclass(frozen=True)
class QueueOptions:
    """host.json extensions.queues, with the defaults of the Storage Queues extension 5.x."""

    batch_size: int = 16
    new_batch_threshold: int | None = None  # None: batchSize / 2, as the extension computes it
    max_polling_interval: timedelta = timedelta(minutes=1)
    visibility_timeout: timedelta = timedelta(0)
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def threshold(self) -> int:
        return self.new_batch_threshold if self.new_batch_threshold is not None else self.batch_size // 2


@dataclass(frozen=True)
class HostOptions:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    function_timeout: timedelta | None = None


def apply_overrides(document: dict[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    """host.json with every `AzureFunctionsJobHost__path__to__setting` applied, as the host's
    configuration does (keys case-insensitive; a later mapping entry wins). Keys come back lowercased."""
    result = _lowercase_keys(document)
    for key, value in settings.items():
        if not key.lower().startswith(OVERRIDE_PREFIX.lower()):
            continue
        path = [part.lower() for part in key[len(OVERRIDE_PREFIX) :].split("__")]
        if not all(path):
            continue
        section = result
        for part in path[:-1]:
            child = section.get(part)
            if not isinstance(child, dict):
                child = section[part] = {}
            section = child
        section[path[-1]] = value
    return result


def _lowercase_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key).lower(): _lowercase_keys(item) for key, item in value.items()}
    return value


def load_host_json(path: Path, settings: Mapping[str, str] | None = None) -> HostOptions:
    """host.json (missing: the defaults) with the app settings' overrides applied; `settings` is
    what the host reads them from (default: the process environment, where the Values are exported)."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    document = apply_overrides(document, os.environ if settings is None else settings)
    extensions = document.get("extensions") or {}
    http = extensions.get("http") or {}
    queues = extensions.get("queues") or {}
    defaults = QueueOptions()
    batch_size = int(queues.get("batchsize", defaults.batch_size))
    if not 1 <= batch_size <= 32:
        raise ConfigError("extensions.queues.batchSize must be between 1 and 32")
    encoding = str(queues.get("messageencoding", defaults.message_encoding)).lower()
    if encoding not in {"base64", "none"}:
        raise ConfigError("extensions.queues.messageEncoding must be 'base64' or 'none'")
    options = QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=int(queues["newbatchthreshold"]) if "newbatchthreshold" in queues else None,
        max_polling_interval=_timespan_or(queues, "maxpollinginterval", defaults.max_polling_interval),
        visibility_timeout=_timespan_or(queues, "visibilitytimeout", defaults.visibility_timeout),
        max_dequeue_count=int(queues.get("maxdequeuecount", defaults.max_dequeue_count)),
        message_encoding=encoding,
    )
    timeout = str(document.get("functiontimeout") or "").strip()
    return HostOptions(
        route_prefix=str(http.get("routeprefix", "api")).strip("/"),
        queues=options,
        function_timeout=parse_timespan(timeout) if timeout and timeout != "-1" else None,
    )


def _timespan_or(section: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    return parse_timespan(str(section[key])) if key in section else default
