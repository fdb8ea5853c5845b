"""The HTTP contract, fuzzed: schemathesis runs against the local host's /api/openapi.json.

A private stack (Azurite, the local tenant, the local Functions host: what `make run` starts, on
free ports) serves the app; `st run` (schemathesis' CLI) loads the document the app serves and
tests every operation in its examples, coverage, fuzzing and stateful phases, deterministically
(--generation-deterministic, one worker) and bounded by --max-examples. Every request carries an
X-MS-CLIENT-PRINCIPAL with the roles Registrar.Approver and Registrar.Admin, so the role routes
(approve, rotate, decommission) get past authorisation as a person's call would.

Checks that run:
- not_a_server_error: no 5xx;
- status_code_conformance, content_type_conformance, response_schema_conformance,
  response_headers_conformance: every answer is documented (status, media type, body, headers);
- positive_data_acceptance_beyond_state (tests/e2e/api_fuzz_checks.py): a request the document
  allows is not refused, except for refusals that depend on state (unknown ids, a tenant not
  onboarded, DNS, Graph's permission catalogue), each listed there and matched problem by problem.

Left out:
- ignored_auth and the function-key part of generated requests: function keys are not enforced
  locally (as under `func start`), so a keyless request is not refused here;
- negative_data_rejection: the document's patterns list the simple forms of durations and URLs
  and the parser accepts more (P1DT12H, lower case, an address literal), so some data the
  document does not describe is accepted on purpose;
- use_after_free, ensure_resource_availability: decommissioning keeps the record (GET answers 200
  after DELETE by design);
- unsupported_method: the Functions host answers an unknown method with 404, not 405, in Azure
  as here;
- max_response_time: tests never assert timings.

Accepted registrations start provisioning in the background; the stack is this module's own and is
stopped (queue work drained, then dropped) at the end, so no other test sees them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import REPO_ROOT, Stack
from tests.e2e.provisioning_support import principal
from tests.fixtures.stack import start_stack

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 50  # per operation and phase; about 2,500 cases in about 40 s on 2 cores
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "positive_data_acceptance_beyond_state",
)
ROLES = principal("Registrar.Approver", "Registrar.Admin")


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("fuzz-stack"), ca_dir=tenant_ca_dir)
    try:
        yield running
    finally:
        running.stop()


def test_the_api_answers_as_its_openapi_document_says(fuzz_stack: Stack, tmp_path: Path) -> None:
    url = f"{fuzz_stack.endpoints['hostUrl']}/api/openapi.json"
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        url,
        "--checks", ",".join(CHECKS),
        "--header", f"X-MS-CLIENT-PRINCIPAL: {ROLES}",
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers", "1",
        "--continue-on-failure",
        "--request-timeout", "30",
        "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.api_fuzz_checks", "PYTHONPATH": str(REPO_ROOT)}
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    cases = re.search(r"(\d+) generated", output)
    print(f"schemathesis: {cases.group(1) if cases else '?'} cases in {took:.1f} s")
    assert result.returncode == 0, output[-20000:]
    assert cases is not None and int(cases.group(1)) > 0, output[-5000:]
    selected, tested = re.search(r"Selected: \d+/(\d+)", output), re.search(r"Tested: (\d+)", output)
    assert selected and tested and tested.group(1) == selected.group(1), output[-5000:]  # every operation
