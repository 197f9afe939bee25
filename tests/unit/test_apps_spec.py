"""apps.json against the domain: each problem names the entry and the field; exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zdt import appspec as apps
from zdt import domain as dm
from zdt.errors import ConfigError

EXTRA = """
[[applications]]
name = "shop"
location = "/srv/app/apps/shop"
mode = "stage"

[[applications]]
name = "blog"
location = "/srv/app/apps/blog"
mode = "nostage"
"""


@pytest.fixture
def domain(tmp_path: Path, sample_toml: str) -> dm.Domain:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + EXTRA)
    return dm.load(path)


def load(tmp_path: Path, domain: dm.Domain, entries: Any) -> tuple[apps.AppChange, ...]:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"applications": entries}))
    return apps.load(path, domain)


def test_a_good_spec(tmp_path: Path, domain: dm.Domain) -> None:
    (tmp_path / "shop-2").mkdir()
    changes = load(tmp_path, domain, [
        {"name": "shop", "patched_location": str(tmp_path / "shop-2"),
         "backup_location": "/srv/app/apps/shop.bak", "mode": "stage"},
        {"name": "blog", "patched_location": "/srv/patches/blog",
         "backup_location": "/srv/app/apps/blog.bak", "mode": "nostage"}])
    assert [(c.name, c.mode) for c in changes] == [("shop", "stage"), ("blog", "nostage")]
    assert changes[0].nodes == ("node1", "node2", "node3")


@pytest.mark.parametrize(("entries", "words"), [
    ([{"name": "blog", "patched_location": "/srv/p", "backup_location": "/srv/app/apps/blog/old",
       "mode": "nostage"}], "applications[0].backup_location: /srv/app/apps/blog/old and"),
    ([{"name": "blog", "patched_location": "/srv/app/apps/blog/new", "backup_location": "/b",
       "mode": "nostage"}], "applications[0].patched_location"),
    ([{"name": "blog", "patched_location": "/srv/p", "backup_location": "/srv/app/home/b",
       "mode": "nostage"}], "lies in the home"),
    ([{"name": "blog", "patched_location": "/srv/p", "backup_location": "/b",
       "mode": "nostage", "partition": "p9"}], "applications[0].partition: 'p9'"),
    ([{"name": "blog", "patched_location": "/srv/p", "backup_location": "/b",
       "mode": "nostage", "partition": 42}], "applications[0].partition: 42"),
    ([{"name": "blog", "patched_location": "/srv/p", "backup_location": "/b",
       "mode": "nostage"},
      {"name": "shop", "patched_location": "/srv/q", "backup_location": "/b",
       "mode": "stage"}], "applications[1].backup_location: /b is also applications[0]'s"),
    ([{"name": 7, "patched_location": "/p", "backup_location": "/b", "mode": "stage"}],
     "must be strings"),
    (["shop"], "applications[0]: must be an object"),
])
def test_bad_entries(tmp_path: Path, domain: dm.Domain, entries: Any, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, domain, entries)
    assert err.value.exit_code == 2
    assert words in str(err.value) and "apps.json" in str(err.value)
