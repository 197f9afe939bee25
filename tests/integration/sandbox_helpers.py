"""Helpers for the integration tests: plain blocking HTTP to the sample service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def get(url: str, cookie: str | None = None, timeout: float = 5.0
        ) -> tuple[int, dict[str, str], dict[str, Any]]:
    """GET a URL of the sample service: (status, headers, JSON body)."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


def lb_servers(info: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for node in info["nodes"] for s in node["servers"] if s["lb"]]


def recorded_workflows(domain: str | Path) -> list[str]:
    """The ids of the workflows in the domain's journal; [] when a refusal created none
    (an exit 2, 3 or 4 creates no state dir, journal or lock)."""
    from zdt import domain as dm
    from zdt.workflow.admission import open_journal

    if not (dm.load(domain).state_dir / "journal.db").exists():
        return []
    journal = open_journal(Path(domain))
    try:
        return [w.id for w in journal.history()]
    finally:
        journal.close()
