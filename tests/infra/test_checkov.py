"""checkov over infra/bicep: no failed check; every suppression carries its reason in the file.

checkov lives in its own venv (.venv-checkov, made by `make setup`): its pins clash with the app's.
--skip-download keeps it offline (otherwise it fetches guideline links from its vendor's API).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.infra.bicep_tree import BICEP_DIR, REPO_ROOT, bicep_files

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"//\s*checkov:skip=([A-Z0-9_]+)(:?)(.*)")


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    assert CHECKOV.exists(), "checkov is not installed: run `make setup` (it creates .venv-checkov)"
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    completed = subprocess.run(
        [str(CHECKOV), "-d", str(BICEP_DIR), "--framework", "bicep", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert completed.stdout.strip(), completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    # One framework gives one object; several give a list.
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check(checkov_report: dict) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for check in checkov_report["results"].get("failed_checks", [])
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0, "checkov could not parse some .bicep files"
    assert summary["passed"] > 0


def test_every_suppression_has_a_reason_and_is_used(checkov_report: dict) -> None:
    suppressions = []
    for path in bicep_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match:
                check_id, colon, reason = match.groups()
                assert colon and len(reason.strip()) >= 20, f"{path.name}: {check_id} needs a reason"
                suppressions.append((path.name, check_id))
    skipped = {
        (check["file_path"].rsplit("/", 1)[-1], check["check_id"])
        for check in checkov_report["results"].get("skipped_checks", [])
    }
    stale = sorted(set(suppressions) - skipped)
    assert not stale, f"suppressions of checks checkov no longer runs there (remove them): {stale}"
    assert checkov_report["summary"]["skipped"] == len(suppressions)
