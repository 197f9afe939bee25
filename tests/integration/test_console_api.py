"""The console's API against a real `zdt console` and a real sandbox: who may use it, the
CLI's checks and error codes, workflows started, watched (SSE), stopped, resumed and
reverted from it — and a console-started workflow stopped by the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_helpers import Console, running_console

from conftest import assert_lossless, capacity_load, fresh_sandbox, zdt

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    with fresh_sandbox(3, 1) as info:
        yield info


@pytest.fixture(scope="module")
def console(sb: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Console]:
    with running_console(sb["domain"], tmp_path_factory.mktemp("token") / "t") as c:
        yield c


def stream(c: Console, wid: str, query: str = "") -> Iterator[dict[str, Any]]:
    """The workflow's journal events over SSE, as they come, until the stream ends."""
    with c.client().stream("GET", f"/api/workflows/{wid}/events{query}") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in reply.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "journal":
                yield json.loads(line[6:])
            elif line.startswith("data: ") and kind == "end":
                return


def events(c: Console, wid: str) -> list[dict[str, Any]]:
    """The workflow's journal events, until the stream ends with its run."""
    return list(stream(c, wid))


@pytest.mark.parametrize(("headers", "cookies"), [
    ({}, {}),                                              # nothing
    ({"Authorization": "Bearer " + "0" * 64}, {}),         # a wrong token
    ({}, {"zdt_console": "0" * 64}),                       # a made-up cookie
])
def test_without_the_token_nothing_is_answered(console: Console, headers: dict[str, str],
                                               cookies: dict[str, str]) -> None:
    for path in ("/", "/api/domain", "/api/workflows", "/api/kinds"):
        reply = httpx.get(console.url + path, headers=headers, cookies=cookies, timeout=30)
        assert reply.status_code == 401
        assert "sandbox" not in reply.text and "node1" not in reply.text
    assert httpx.post(console.url + "/api/workflows", headers=headers, cookies=cookies,
                      json={"kind": "restart"}, timeout=30).status_code == 401


def test_the_login_link_works_once_and_changes_need_the_page_s_csrf_token(
        console: Console) -> None:
    browser = httpx.Client(base_url=console.url, timeout=30)
    assert browser.get("/login?code=" + "1" * 32).status_code == 401
    assert browser.get("/login?token=" + console.token).status_code == 401  # never in a URL
    link = console.login.removeprefix(console.url)
    reply = browser.get(link, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["referrer-policy"] == "no-referrer"
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    assert cookie.startswith(f"zdt_console_{console.url.rsplit(':', 1)[1]}=")
    other = httpx.Client(base_url=console.url, timeout=30)
    assert other.get(link, follow_redirects=False).status_code == 401    # used up
    page = browser.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers[
        "content-security-policy"]
    csrf = page.text.split('name="csrf" content="', 1)[1].split('"', 1)[0]
    assert browser.get("/api/domain").json()["name"] == "sandbox"
    body = {"kind": "restart", "targets": "nosuch"}
    refused = browser.post("/api/preview", json=body)       # a cookie alone changes nothing
    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]
    answered = browser.post("/api/preview", json=body, headers={"X-CSRF-Token": csrf})
    assert answered.status_code == 400                       # through: the CLI's own check
    cross = browser.post("/api/preview", json=body, headers={
        "X-CSRF-Token": csrf, "Origin": "http://elsewhere.example"})
    assert cross.status_code == 403 and "another origin" in cross.json()["message"]
    typed = other.post("/login", data={"token": console.token}, follow_redirects=False)
    assert typed.status_code == 303                          # the logged-out page's form
    assert other.get("/api/workflows").status_code == 200
    wrong = httpx.post(console.url + "/login", data={"token": "0" * 64}, timeout=30)
    assert wrong.status_code == 401 and "sandbox" not in wrong.text


@pytest.mark.parametrize(("body", "args", "status", "name"), [
    ({"kind": "restart", "targets": "nosuch"}, ["restart", "--targets", "nosuch"], 400,
     "bad-input"),
    ({"kind": "home", "targets": "domain"}, None, 400, "bad-input"),
    ({"kind": "restart", "retries": "many"}, None, 400, "bad-input"),
    ({"kind": "restart", "colour": "blue"}, None, 400, "bad-input"),
    ({"kind": "runtime", "runtime_home": "/opt/runtime-2;reboot"},
     ["runtime", "--runtime-home", "/opt/runtime-2;reboot"], 400, "bad-input"),
    ({"kind": "home", "archive": "/nonexistent.tar.gz"},
     ["home", "--archive", "/nonexistent.tar.gz"], 400, "bad-input"),
    ({"kind": "restart", "start_timeout": None}, None, 400, "bad-input"),   # not offered
    ({"kind": "restart", "partitions": 5}, None, 400, "bad-input"),
    ({"kind": "restart", "targets": 7}, None, 400, "bad-input"),
    ({"kind": "blue"}, None, 400, "bad-input"),
])
def test_bad_input_is_refused_with_the_cli_s_message(console: Console, sb: dict[str, Any],
                                                     body: dict[str, Any],
                                                     args: list[str] | None, status: int,
                                                     name: str) -> None:
    with console.client() as c:
        for path in ("/api/preview", "/api/workflows"):
            reply = c.post(path, json=body)
            assert (reply.status_code, reply.json()["error"], reply.json()["exit_code"]) == (
                status, name, 2), reply.text
    if args is not None:                                     # word for word the CLI's
        cli = zdt("preview", "-d", sb["domain"], *args)
        assert cli.returncode == 2 and reply.json()["message"] in cli.stderr.replace(
            "\n", " ").replace("zdt: ", ""), (reply.json()["message"], cli.stderr)


async def test_a_workflow_from_the_api_under_load_then_stopped_by_the_cli_and_reverted(
        console: Console, sb: dict[str, Any]) -> None:
    with console.client() as c:
        preview = c.post("/api/preview", json={"kind": "restart", "targets": "cluster1",
                                               "shutdown_timeout": 10})
        assert preview.status_code == 200 and preview.json()["ok"] is True
        assert [v["node"] for v in preview.json()["plan"]] == ["node1", "node2", "node3"]
        # new-connection clients here; the browser test's keep their connections alive
        async with capacity_load(sb["lb_url"], keep_alive=False) as load:
            started = c.post("/api/workflows", json={
                "kind": "restart", "targets": "cluster1", "shutdown_timeout": 10,
                "delay_between_nodes": 2})
            assert started.status_code == 202, started.text
            wid = started.json()["id"]
            locked = c.post("/api/workflows", json={"kind": "restart", "targets": "cluster1"})
            assert (locked.status_code, locked.json()["error"]) == (423, "locked")
            busy = c.post(f"/api/workflows/{wid}/resume")         # the CLI's refusal: exit 4
            assert (busy.status_code, busy.json()["exit_code"]) == (423, 4)
            allowed = c.get(f"/api/workflows/{wid}").json()["actions"]
            assert allowed["stop"] is None and allowed["resume"]["exit_code"] == 4
            stopped = await asyncio.to_thread(zdt, "stop", wid, "-d", sb["domain"])
            assert stopped.returncode == 0, stopped.stderr      # the CLI stops it …
            seen = await asyncio.to_thread(events, console, wid)
            states = [e["message"] for e in seen if e["kind"] == "workflow"]
            assert states[-1] == "stopped"                     # … and the API shows it
            shown = c.get(f"/api/workflows/{wid}").json()
            assert shown["state"] == "stopped" and shown["actions"]["stop"]["exit_code"] == 3
            assert shown["actions"]["resume"] is None and shown["actions"]["revert"] is None
            resumed = c.post(f"/api/workflows/{wid}/resume")
            assert resumed.status_code == 202
            await asyncio.to_thread(events, console, wid)
            assert c.get(f"/api/workflows/{wid}").json()["state"] == "succeeded"
            again = c.post(f"/api/workflows/{wid}/resume")
            assert (again.status_code, again.json()["error"]) == (409, "precondition")
            assert "nothing to resume" in again.json()["message"]
            c.post(f"/api/workflows/{wid}/revert")
            await asyncio.to_thread(events, console, wid)
        report = c.get(f"/api/workflows/{wid}").json()
        assert report["state"] == "reverted"
        assert_lossless(load.stats, report)
        history = c.get("/api/workflows").json()
        assert history[0]["id"] == wid and history[0]["state"] == "reverted"
        stop = c.post(f"/api/workflows/{wid}/stop")
        assert (stop.status_code, stop.json()["exit_code"]) == (409, 3)
        assert c.get("/api/workflows/nosuch").status_code == 404


def follow_through_a_cli_resume(c: Console, wid: str, domain: str
                                ) -> tuple[list[dict[str, Any]], int]:
    """A page's stream (?follow=1), open before `zdt resume` starts in another process:
    everything it saw, up to the resumed run's end, and the resume's exit code."""
    found: list[dict[str, Any]] = []
    code = None
    for event in stream(c, wid, "?follow=1"):
        found.append(event)
        if (event["kind"], event["message"]) == ("workflow", "stopped") and code is None:
            code = zdt("resume", wid, "-d", domain).returncode
        if (event["kind"], event["message"]) == ("workflow", "succeeded"):
            break
    assert code is not None
    return found, code


async def test_a_page_following_a_workflow_sees_its_resume_from_the_cli(
        console: Console, sb: dict[str, Any]) -> None:
    with console.client() as c:
        started = c.post("/api/workflows", json={"kind": "restart", "targets": "cluster1",
                                                 "shutdown_timeout": 10, "pause_after": 1})
        wid = started.json()["id"]
        first = await asyncio.to_thread(events, console, wid)   # the canary run, to its end
        assert [e["message"] for e in first if e["kind"] == "workflow"][-1] == "stopped"
        seen, code = await asyncio.wait_for(asyncio.to_thread(
            follow_through_a_cli_resume, console, wid, sb["domain"]), 120)
    assert code == 0
    states = [e["message"] for e in seen if e["kind"] == "workflow"]
    assert states[-2:] == ["running", "succeeded"]          # the CLI's run, streamed on
    assert [e["id"] for e in seen] == sorted(e["id"] for e in seen)


def test_the_domain_as_it_is(console: Console, sb: dict[str, Any]) -> None:
    with console.client() as c:
        d = c.get("/api/domain").json()
    assert [(n["name"], n["home"]["version"]) for n in d["nodes"]] == [
        ("node1", "v1"), ("node2", "v1"), ("node3", "v1")]
    servers = {s["name"]: s for s in d["servers"]}
    assert all(s["process"]["state"] == "RUNNING" and s["process"]["pid"] > 1
               for s in servers.values())
    assert [(n, s["balancer"]["admin"]) for n, s in servers.items() if s["lb"]] == [
        ("node1-s1", "ready"), ("node2-s1", "ready"), ("node3-s1", "ready")]
    assert all(s["stale"] == [] for s in servers.values())   # local nodes: scanned


def test_a_start_runs_only_what_was_previewed(console: Console) -> None:
    body = {"kind": "restart", "targets": "cluster1", "shutdown_timeout": 10}
    with console.client() as c:
        digest = c.post("/api/preview", json=body).json()["digest"]
        other = c.post("/api/preview", json={**body, "retries": 1}).json()["digest"]
        assert digest != other
        stale = c.post("/api/workflows", json={**body, "retries": 1,
                                                "preview_digest": digest})
        assert (stale.status_code, stale.json()["error"]) == (409, "precondition")
        assert "changed since the preview" in stale.json()["message"]


def test_a_read_only_console_changes_nothing(sb: dict[str, Any], tmp_path: Path) -> None:
    with running_console(sb["domain"], tmp_path / "t", "--read-only") as ro, \
            ro.client() as c:
        assert c.get("/api/domain").json()["read_only"] is True
        assert c.get("/api/kinds").json()["read_only"] is True
        for path in ("/api/preview", "/api/workflows"):
            reply = c.post(path, json={"kind": "restart"})
            assert reply.status_code == 403 and "read-only" in reply.json()["message"]
