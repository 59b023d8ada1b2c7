"""The dashboard end to end in headless Chromium (Debian's chromium, driven by selenium): submit a
task from the page, watch its bar reach 100 %, see the video element load the result."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.services_proc import ROOT

ARTIFACTS = ROOT / ".artifacts"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium and chromium-driver are required (make test installs them from Debian)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1400",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def wait_js(driver, script: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def test_submit_watch_progress_and_play_the_video(redis_server, start_generator, start_ingest, browser):
    generator = start_generator()
    url = start_ingest(WAN22_STORAGE=str(generator.storage))
    browser.get(f"{url}/ui")
    wait_js(browser, "return document.querySelectorAll('#task option').length > 0", 20)
    browser.execute_script("document.querySelector('#task').value = 'demo'")
    browser.find_element("id", "prompt").send_keys("a fox in the snow")
    browser.find_element("css selector", "#submit button").click()
    task_id = wait_js(
        browser,
        "const t = document.querySelector('#submit-result').textContent; return /^[0-9a-f]{32}$/.test(t) && t",
        20,
    )

    percent = wait_js(browser, f"const p = window.wan22Progress['{task_id}']; return p && p.percent === 100 && 100")
    assert percent == 100
    duration = wait_js(
        browser,
        f"const v = document.querySelector('video[data-task=\"{task_id}\"]'); "
        "return v && v.readyState >= 1 && v.duration > 0 && v.duration",
    )
    assert duration > 0
    poster = browser.execute_script(f"return document.querySelector('video[data-task=\"{task_id}\"]').poster")
    assert poster.endswith(f"/files/{task_id}/poster.jpg")
    assert "wan22:jobs:demo" in browser.find_element("id", "groups").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    assert Path(ARTIFACTS / "dashboard.png").stat().st_size > 10_000
