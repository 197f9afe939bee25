"""The domain: domain.toml read, validated and modelled (immutable).

model.py is the domain's own schema; adapter_config.py the `[lb]` / `[services]` sections
that each implementation declares; loader.py reads a file (errors name file, line and
field); checks.py the checks across sections.
"""

from zdt.domain.adapter_config import AdapterConfig, LbConfig, ServicesConfig
from zdt.domain.loader import load, parse
from zdt.domain.model import (
    PHASES,
    SSH,
    Application,
    Capacity,
    Cluster,
    Domain,
    DomainSection,
    Hooks,
    Name,
    Node,
    Port,
    Runtime,
    Server,
    SSHAddress,
)

__all__ = [
    "PHASES",
    "SSH",
    "AdapterConfig",
    "Application",
    "Capacity",
    "Cluster",
    "Domain",
    "DomainSection",
    "Hooks",
    "LbConfig",
    "Name",
    "Node",
    "Port",
    "Runtime",
    "SSHAddress",
    "Server",
    "ServicesConfig",
    "load",
    "parse",
]
