"""The owners step of the registration workflow: the request's `owners` become owners of the app.

Runs once the application exists, next to the service principal and credential steps. Each owner
is added with POST /applications/{id}/owners/$ref; an owner already there counts as added, so a
re-run after a crash converges (the record lists what Graph confirmed, in `owners_added`).

- An id the tenant does not know, or that names neither a user nor a service principal, is a
  problem of the request: the registration fails (ValidationFailed, field `owners[i]`), and what
  was made is removed, as for any permanent failure.
- Graph refusing the write itself (403) means Registrar's identity may not add owners: Graph asks
  for Application.ReadWrite.All with Directory.Read.All, which Registrar does not hold by default
  (docs/security.md). The
  registration still turns active; the owners become a manual step and the step is `skipped`.

Registrar's own service principal stays an owner: it created the app, and
Application.ReadWrite.OwnedBy lets it manage (rotate, decommission) only apps it owns. This step
only ever adds owners.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from functions.core.ports import Clock, Directory
from functions.core.record.errors import NotFound, PermanentError, RecordInconsistent, ValidationFailed
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import Problem
from functions.core.record.steps import in_step

DENIED = "Authorization_RequestDenied"
NEEDS = "Graph needs Application.ReadWrite.All and Directory.Read.All to add owners; Registrar's identity lacks them"


async def add_owners(keeper: RecordKeeper, directory: Directory, clock: Clock) -> None:
    record = keeper.current
    wanted = record.plan.owners
    missing = [o for o in wanted if o not in record.owners_added]
    if not missing or record.owners_refused is not None:
        return
    if record.app_object_id is None:
        raise RecordInconsistent(record.id, "app_object_id", "owners")
    tenant, app = record.tenant_id, record.app_object_id
    async with in_step("owners"):
        outcomes = await asyncio.gather(
            *(directory.add_owner(tenant, app, owner) for owner in missing), return_exceptions=True
        )
        added = tuple(o for o, outcome in zip(missing, outcomes, strict=True) if outcome is None)
        problems: list[Problem] = []
        denied = False
        unexpected: BaseException | None = None
        for owner, outcome in zip(missing, outcomes, strict=True):
            field = f"owners[{wanted.index(owner)}]"
            if outcome is None:
                continue
            if isinstance(outcome, NotFound) and outcome.key == owner:
                problems.append(Problem(field, f"no user or service principal {owner} in tenant {tenant}"))
            elif isinstance(outcome, PermanentError) and outcome.code == DENIED:
                denied = True
            elif isinstance(outcome, PermanentError):
                problems.append(Problem(field, f"not a user or service principal: {outcome}"))
            elif unexpected is None:
                unexpected = outcome  # transient (retried by the queue), the app gone, or a bug
        if added:  # progress is kept even when the step goes on to fail or pause
            await keeper.update(lambda r: replace(r, owners_added=(*r.owners_added, *added)))
        if unexpected is not None:
            raise unexpected
        if problems:
            raise ValidationFailed(problems, status=422)
    now = clock.now()
    if denied:
        await keeper.update(
            lambda r: replace(r, owners_refused=NEEDS).with_event(
                "owners", "skipped", now, f"{NEEDS}: a manual step"
            )
        )
        return
    await keeper.update(
        lambda r: r.with_event("owners", "done", now, f"{len(r.owners_added)} owner(s) added")
    )
