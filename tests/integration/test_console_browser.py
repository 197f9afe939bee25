"""The console in a real browser (Debian's Chromium, headless, driven by Selenium through
Debian's chromium-driver; nothing is downloaded): log in with the printed link, preview and
start a rolling restart of the sandbox under load, watch its steps turn done without a
reload, stop it, resume it, revert it. A screenshot of the workflow page is kept in the
test's artifacts (ZDT_ARTIFACTS, default build/artifacts)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import running_console
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import assert_lossless, capacity_load, fresh_sandbox

pytestmark = pytest.mark.integration

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("ZDT_ARTIFACTS", "build/artifacts"))


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def sb() -> Iterator[dict[str, Any]]:
    with fresh_sandbox(3, 1) as info:
        domain = Path(info["domain"])     # a short metric gate, turned on from the form
        domain.write_text(domain.read_text() + "\n[analysis]\nenabled = false\nwindow = 1\n"
                          "interval = 1\nfailure_limit = 1\n")
        yield info


def wait(driver: WebDriver, what: str, until: Any, timeout: float = 60) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        until, message=f"waiting for {what}")


# Read in one script each: the page re-renders as events arrive, so an element found by
# one call could be gone by the next.
STATE = "const s = document.getElementById('workflow-state'); return s ? s.textContent : ''"
CELL = """
for (const row of document.querySelectorAll('#steps tbody tr')) {
  if (row.cells[1].textContent !== arguments[0]) continue;
  for (const c of row.querySelectorAll('.step'))
    if (c.textContent === arguments[1]) return c.dataset.state;
}
return '';"""
CLICK = """
const b = document.getElementById(arguments[0]);
if (!b || b.disabled) return false;
b.click(); return true;"""


def state(driver: WebDriver) -> str:
    return str(driver.execute_script(STATE))


def cell(driver: WebDriver, node: str, step: str) -> str:
    """data-state of a node's step on the workflow page ('' while not shown)."""
    return str(driver.execute_script(CELL, node, step))


def click(driver: WebDriver, element_id: str) -> None:
    """Click a button once it is enabled (as a person would wait for it)."""
    wait(driver, f"#{element_id} enabled", lambda d: d.execute_script(CLICK, element_id))


async def test_preview_start_watch_stop_resume_revert_from_the_page(
        sb: dict[str, Any], browser: WebDriver, tmp_path: Path) -> None:
    with running_console(sb["domain"], tmp_path / "token") as console:
        browser.get(console.login)
        wait(browser, "the domain page", lambda d: "Domain sandbox" in d.page_source)
        browser.execute_script("window.zdtSamePage = true")   # gone if the page reloads
        browser.find_element(By.CSS_SELECTOR, 'a[href="#/new"]').click()
        kind = wait(browser, "the form", lambda d: d.find_element(By.ID, "kind"))
        Select(kind).select_by_value("restart")
        for name, value in (("targets", "cluster1"), ("shutdown_timeout", "10"),
                            ("delay_between_nodes", "2")):
            field = browser.find_element(By.ID, f"f-{name}")
            field.clear()
            field.send_keys(value)
        Select(browser.find_element(By.ID, "f-analysis")).select_by_value("true")
        assert not browser.find_element(By.ID, "start").is_enabled()  # no start unseen
        browser.find_element(By.ID, "preview-button").click()
        wait(browser, "the preview", lambda d: d.find_elements(By.ID, "preview-report"))
        plan = browser.find_element(By.ID, "preview-report").text
        assert "node1" in plan and "drain → stop → start → health → ready → analysis" in plan
        assert "analysis: after each ready, 1 check(s) of 1 s" in plan
        async with capacity_load(sb["lb_url"]) as load:
            click(browser, "start")
            wait(browser, "the workflow page", lambda d: state(d) in ("running", "pending"))
            wid = browser.current_url.rsplit("/", 1)[-1]
            wait(browser, "node1 back in rotation", lambda d: cell(d, "node1", "ready") ==
                 "done")
            assert cell(browser, "node3", "ready") == "pending"   # seen while under way
            click(browser, "action-stop")
            wait(browser, "the stop", lambda d: state(d) == "stopped")
            assert cell(browser, "node2", "drain") == "pending"   # stopped between nodes
            click(browser, "action-resume")
            wait(browser, "the resume's end", lambda d: state(d) == "succeeded", 120)
            assert all(cell(browser, n, s) == "done" for n in ("node1", "node2", "node3")
                       for s in ("drain", "stop", "start", "health", "ready", "analysis"))
            verdicts = wait(browser, "the verdicts", lambda d: d.execute_script(
                "return [...document.querySelectorAll('#analysis li.verdict')].map("
                "li => [li.dataset.verdict, li.textContent])") or None)
            assert [v for v, _ in verdicts] == ["passed"] * 3, verdicts
            assert all("analysis passed after 1 check(s)" in t for _, t in verdicts)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "console-workflow.png"))
            click(browser, "action-revert")
            wait(browser, "the revert's end", lambda d: state(d) == "reverted", 120)
        assert browser.execute_script("return window.zdtSamePage") is True
        with console.client() as c:
            report = c.get(f"/api/workflows/{wid}").json()
        assert report["state"] == "reverted" and report["request"]["analysis"] is True
        assert_lossless(load.stats, report)


def test_the_page_fits_a_narrow_screen(sb: dict[str, Any], browser: WebDriver,
                                       tmp_path: Path) -> None:
    browser.set_window_size(390, 844)
    with running_console(sb["domain"], tmp_path / "token") as console:
        browser.get(console.login)
        for page, text in (("#/", "Servers"), ("#/new", "Preview"), ("#/history", "History")):
            browser.get(console.url + "/" + page)
            wait(browser, page, lambda d, t=text: t in d.find_element(By.ID, "view").text)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (page, overflow)
