"""A request as asked, as journaled and as read back; each kind's own fields and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zdt.errors import ConfigError
from zdt.workflow import kinds
from zdt.workflow.request import RolloutRequest, from_journal

# What an earlier zdt journaled for a home rollout: every kind's field, most of them None.
OLD_HOME = {"targets": ["cluster1"], "shutdown_timeout": 10.0, "retries": 2,
            "retry_delay": 0.1, "delay_between_nodes": 0.0, "auto_revert": True,
            "allow_downtime": False, "kind": "home", "archive": "/a/v2.tar.gz",
            "backup_dir": None, "rollback": False, "session_compatible": True,
            "pause_after": None, "health_timeout": 30.0, "start_timeout": 30.0,
            "runtime_home": None, "apps": None, "partitions": [],
            "fail_on_lb_errors": False, "change": {"archive": "/a/v2.tar.gz"},
            "app_changes": []}


def test_a_request_is_journaled_flat_and_read_back_whole() -> None:
    asked = RolloutRequest.of("update", ("domain",), archive="/a/v2.tar.gz",
                              runtime_home="/opt/rt-2", retries=1, pause_after=1)
    assert asked.params == {"archive": "/a/v2.tar.gz", "runtime_home": "/opt/rt-2"}
    flat = asked.flat()
    assert flat["archive"] == "/a/v2.tar.gz" and flat["retries"] == 1
    assert flat["targets"] == ["domain"] and "params" not in flat
    back = from_journal({**flat, "change": None, "app_changes": []},
                        kinds.get("update").field_names())
    assert back == asked


def test_a_journal_of_an_earlier_zdt_is_read_by_the_kind_it_names() -> None:
    back = from_journal(OLD_HOME, kinds.get("home").field_names())
    assert back.kind == "home" and back.targets == ("cluster1",)
    assert back.params == {"archive": "/a/v2.tar.gz", "backup_dir": None, "rollback": False,
                           "session_compatible": True}
    assert (back.shutdown_timeout, back.retry_delay) == (10.0, 0.1)
    kinds.get("home").validate(back)          # what was valid then is valid now


@pytest.mark.parametrize(("kind", "given", "words"), [
    ("home", {}, "--archive: required by `zdt rollout home`"),
    ("runtime", {}, "--runtime-home"),
    ("runtime", {"runtime_home": "opt/rt"}, "must be an absolute path"),
    ("runtime", {"runtime_home": "/opt/rt 2"}, "only letters, digits"),
    ("apps", {}, "--apps: required by `zdt rollout apps` (The apps.json spec.)"),
    ("update", {}, "an update needs at least one of --archive, --runtime-home and --apps"),
    ("update", {"apps": "a.json", "rollback": True}, "--rollback cannot be combined"),
    ("home", {"archive": "a", "backup_dir": "/srv/../b"}, "--backup-dir: "),
    ("home", {"archive": "a", "session_compatible": False},
     "--no-session-compatible: the new version cannot serve old sessions"),
    ("restart", {"archive": "a"}, "--archive: `zdt rollout restart` has no such option "
                                  "(its own: --partitions, --stale)"),
    ("restart", {"partitions": "p1"}, "--partitions: give names, comma-separated"),
    ("home", {"archive": 3}, "--archive: 3 is not a text"),
    ("home", {"archive": "a", "rollback": "yes"}, "--rollback: 'yes' is not true or false"),
])
def test_each_kind_checks_its_own_fields(kind: str, given: dict[str, Any], words: str) -> None:
    request = RolloutRequest.of(kind, ("domain",), **given)
    with pytest.raises(ConfigError) as err:
        kinds.get(kind).validate(request)
    assert words in str(err.value) and err.value.exit_code == 2


@pytest.mark.parametrize(("option", "value", "words"), [
    ("retries", 101, "--retries: 101 is not between 0 and 100"),
    ("shutdown_timeout", -1.0, "--shutdown-timeout: -1 is not between 0 and 86400"),
    ("pause_after", 0, "--pause-after: 0 is not a number of nodes"),
    ("retries", "2", "--retries: '2' is not a whole number"),
    ("auto_revert", 1, "--auto-revert: 1 is not true or false"),
    ("retry_delay", True, "--retry-delay: True is not a number"),
])
def test_the_common_options_are_checked_once_for_every_kind(option: str, value: Any,
                                                            words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        RolloutRequest.of("restart", ("domain",), **{option: value}).validate_common()


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown rollout kind 'blue' \(known: restart, "
                                          r"home, runtime, apps, update\)"):
        kinds.get("blue")


def test_the_update_leaves_out_the_steps_of_parts_not_asked_for() -> None:
    update = kinds.get("update")
    shape = update.shape(RolloutRequest.of("update", ("domain",), runtime_home="/opt/rt"))
    assert shape.omit == {"extract", "backup", "switch", "stage", "apps"}
    assert [s for s in shape.visit_steps if s not in shape.omit and ":" not in s] == [
        "drain", "stop", "rewrite", "start", "health", "ready"]


def test_a_request_that_asks_the_nodes_is_planned_by_app_plan_only(domain_file: Path) -> None:
    """`restart --stale` narrows its targets by scanning the nodes: a start that skipped
    that scan would restart every targeted server, so the plain prepare refuses it."""
    from zdt.workflow.runner import Runner

    with pytest.raises(ConfigError, match=r"asks the nodes before it is planned: prepare it "
                                          r"with App\.plan"):
        Runner(domain_file).prepare(RolloutRequest.of("restart", ("web",), stale=True))
    assert Runner(domain_file).prepare(RolloutRequest.of("restart", ("web",))).plan.steps
