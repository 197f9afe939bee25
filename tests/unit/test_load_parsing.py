"""What the load generators count: the answer heads zdt's generator reads, and wrk's
summary lines as zdt's Lua script prints them."""

from __future__ import annotations

import pytest

from zdt.lab import wrk
from zdt.lab.load import _head


@pytest.mark.parametrize(("head", "expected"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 12", (200, False, 12)),
    (b"HTTP/1.1 503 Service Unavailable\r\nconnection: Close\r\ncontent-length: 0",
     (503, True, 0)),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3", (200, True, 3)),          # 1.0: closes
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3", (200, False, 3)),
    (b"HTTP/1.1 200 OK", (200, False, None)),                            # body to EOF
])
def test_answer_heads(head: bytes, expected: tuple[int, bool, int | None]) -> None:
    assert _head(head) == expected


@pytest.mark.parametrize("head", [b"SSH-2.0-OpenSSH_9.2", b"HTTP/1.1 abc", b""])
def test_what_is_not_an_http_answer_is_an_error(head: bytes) -> None:
    with pytest.raises(ValueError):
        _head(head)


def test_wrk_summary_counts_socket_errors_on_top_of_answers() -> None:
    text = ("Running 1440m test @ http://127.0.0.1:8000/\n"
            "zdt-requests 1000\nzdt-errors 2 3 0 4 1\nzdt-latency-max 125000\n"
            "zdt-versions v1 600\nzdt-versions v2 396\nzdt-servers s1 996\n")
    stats = wrk.parse(text, 2.0)
    # 1000 answers (4 non-2xx, 1 later than the timeout) + 5 requests that got none
    assert (stats.requests, stats.failed) == (1005, 10)
    assert dict(stats.errors) == {"connect": 2, "read": 3, "non-2xx/3xx": 4, "timeout": 1}
    assert (dict(stats.versions), stats.latency_max) == ({"v1": 600, "v2": 396}, 0.125)


def test_a_clean_wrk_run_has_no_failure() -> None:
    stats = wrk.parse("zdt-requests 50\nzdt-errors 0 0 0 0 0\n", 1.0)
    assert (stats.requests, stats.failed, dict(stats.errors)) == (50, 0, {})


def test_wrk_summary_tolerates_blank_lines_and_names_with_spaces() -> None:
    stats = wrk.parse("\nzdt-requests 3\nzdt-errors 0 0 0 0 0\nzdt-versions 2.0 beta 3\n\n", 1.0)
    assert (stats.requests, dict(stats.versions)) == (3, {"2.0 beta": 3})
