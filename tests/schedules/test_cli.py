"""``taskstatus schedules`` and ``taskstatus limits``: manage them from the command line, and
bad input is a one-line error with a non-zero exit."""

from __future__ import annotations

import json

from tests.cli.test_cli import db, ts

__all__ = ["db"]  # the fixture


def test_schedules_add_list_pause_resume_delete(db: str) -> None:
    """A schedule made by the CLI is listed with its next firings, pauses, resumes, goes."""
    add = [
        "nightly",
        "Sleep",
        '{"seconds": 1}',
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Paris",
    ]
    made = ts("schedules", "add", *add, "--overlap", "skip", "-d", db, "--json", check=True)
    [doc] = json.loads(made.stdout)
    assert doc["cron"] == "0 2 * * *" and doc["overlap"] == "skip" and len(doc["nextFires"]) == 3
    ts(
        "schedules",
        "add",
        "often",
        "Sleep",
        '{"seconds": 1}',
        "--every",
        "30",
        "-d",
        db,
        check=True,
    )
    listed = json.loads(ts("schedules", "list", "-d", db, "--json", check=True).stdout)
    assert [d["name"] for d in listed] == ["nightly", "often"]
    assert "paused" in ts("schedules", "pause", "often", "-d", db, check=True).stdout
    assert "paused" not in ts("schedules", "resume", "often", "-d", db, check=True).stdout
    ts("schedules", "delete", "often", "-d", db, check=True)
    listed = json.loads(ts("schedules", "list", "-d", db, "--json", check=True).stdout)
    assert [d["name"] for d in listed] == ["nightly"]


def test_schedules_refuse_bad_input_in_one_line(db: str) -> None:
    """Bad cron, unknown time zone, unknown handler, neither --cron nor --every: exit 1 and a
    message naming the problem."""
    cases = [
        (["x", "Sleep", "--cron", "0 25 * * *"], "cron:"),
        (["x", "Sleep", "--cron", "0 2 * * *", "--timezone", "Moon/Base"], "unknown time zone"),
        (["x", "Nope", "--every", "5"], "Nope"),
        (["x", "Sleep"], "either cron or every"),
    ]
    for args, says in cases:
        result = ts("schedules", "add", *args, "-d", db)
        assert result.returncode == 1, result
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = ts("schedules", "pause", "nope", "-d", db)
    assert missing.returncode == 1 and "no schedule named nope" in missing.stderr


def test_limits_set_and_list(db: str) -> None:
    """Limits set by the CLI are listed; setting none removes them."""
    ts("limits", "set", "Sleep", "--concurrency", "2", "--rate", "20", "--limit-key", "seconds",
       "-d", db, check=True)  # fmt: skip
    listed = ts("limits", "list", "-d", db, check=True).stdout
    assert "Sleep" in listed and "20" in listed
    bad = ts("limits", "set", "Sleep", "--concurrency", "0", "-d", db)
    assert bad.returncode == 1 and "concurrency: 0" in bad.stderr
    ts("limits", "set", "Sleep", "-d", db, check=True)
    assert "Sleep" not in ts("limits", "list", "-d", db, check=True).stdout
