"""What the systemd and command managers share: argv templates filled in item by item."""

from __future__ import annotations

from zdt.domain import Domain, Server
from zdt.template import fill as fill_template


def fill(template: tuple[str, ...], domain: Domain, server: Server) -> list[str]:
    """Each argv item filled in on its own: a value with spaces, quotes or `$()` stays one
    argument and is never seen by a shell."""
    values = {"server": server.name, "node": server.node, "home": domain.domain.home}
    return [fill_template(item, values) for item in template]


def sudo(domain: Domain, argv: list[str]) -> list[str]:
    """`sudo -n` (never a password prompt: a rollout cannot answer one) when asked for."""
    return ["sudo", "-n", *argv] if domain.services.sudo else argv
