"""Rotation scheduling rules: due dates, retirement, index keys and job identity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.core.record.schedule import (
    JobAction,
    RotationJob,
    index_partition,
    job_id,
    retirement_at,
    rotation_due_at,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_two_year_secret_is_due_at_the_lifetime_fraction() -> None:
    due = rotation_due_at(
        START, START + timedelta(days=730), lead_time=timedelta(days=30), lifetime_fraction=0.66
    )
    assert due == START + timedelta(days=730) * 0.66


def test_lead_time_wins_when_it_is_earlier() -> None:
    due = rotation_due_at(
        START, START + timedelta(days=90), lead_time=timedelta(days=40), lifetime_fraction=0.9
    )
    assert due == START + timedelta(days=50)


def test_short_lifetime_never_rotates_before_half_its_life() -> None:
    due = rotation_due_at(
        START, START + timedelta(seconds=60), lead_time=timedelta(days=30), lifetime_fraction=0.66
    )
    assert due == START + timedelta(seconds=30)


def test_due_date_is_always_before_expiry() -> None:
    for days in (1, 7, 30, 90, 365, 730):
        expires = START + timedelta(days=days)
        due = rotation_due_at(START, expires, lead_time=timedelta(days=30), lifetime_fraction=0.66)
        assert START < due < expires


def test_fraction_must_be_sensible() -> None:
    with pytest.raises(ValueError, match="lifetime_fraction"):
        rotation_due_at(START, START + timedelta(days=1), lead_time=timedelta(days=1), lifetime_fraction=0)


def test_retirement_after_overlap_but_not_after_expiry() -> None:
    rotated = START + timedelta(days=100)
    assert retirement_at(rotated, START + timedelta(days=200), timedelta(days=1)) == rotated + timedelta(
        days=1
    )
    assert retirement_at(rotated, rotated + timedelta(hours=2), timedelta(days=1)) == rotated + timedelta(
        hours=2
    )
    assert retirement_at(rotated, None, timedelta(days=1)) == rotated + timedelta(days=1)


def test_index_partitions_sort_in_time_order_across_days_and_zones() -> None:
    moments = [START + timedelta(hours=h * 7) for h in range(50)]
    keys = [index_partition(m) for m in moments]
    assert keys == sorted(keys)
    assert index_partition(datetime(2026, 11, 22, 5, 30, tzinfo=UTC)) == "due-2026112205"
    cet = datetime(2026, 11, 22, 6, 30).astimezone(UTC)
    assert index_partition(cet) == index_partition(cet.astimezone())


def test_job_ids_agree_between_sweeps_and_differ_by_generation_and_action() -> None:
    assert job_id("reg-1", 3, JobAction.ROTATE) == job_id("reg-1", 3, JobAction.ROTATE)
    assert (
        len(
            {
                job_id("reg-1", 3, JobAction.ROTATE),
                job_id("reg-1", 4, JobAction.ROTATE),
                job_id("reg-1", 3, JobAction.RETIRE, "k1"),
            }
        )
        == 3
    )


def test_job_message_round_trip_recomputes_the_id() -> None:
    job = RotationJob(
        job_id=job_id("reg-1", 2, JobAction.RETIRE, "key-1"),
        registration_id="reg-1",
        generation=2,
        action=JobAction.RETIRE,
        due_at=START,
        key_id="key-1",
        requested_by="timer",
    )
    forged = {**job.to_message(), "jobId": "something-else"}

    assert RotationJob.from_message(job.to_message()) == job
    assert RotationJob.from_message(forged).job_id == job.job_id
