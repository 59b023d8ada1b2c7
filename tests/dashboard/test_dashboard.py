"""The dashboard end to end in headless Chromium (Debian's chromium, driven by selenium) against a
real ingest, generator and redis-server: submit a task from the page, watch its bar reach 100 %,
see the video element load the result; submit an image task with an uploaded file and follow it
on its task page; cancel a task and replay a dead letter through the confirmation dialog."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from services.keys import Keys
from services.redisconn import connect
from tests.dashboard.helpers import dead_letter_t2v_job
from tests.services_proc import ROOT

ARTIFACTS = ROOT / ".artifacts"
KEYS = Keys()


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


@pytest.fixture(scope="module")
def stack(start_generator, start_ingest) -> str:
    """One generator and one ingest for the module: starting a gang is most of a test's time."""
    generator = start_generator(models_extra="previews = true\npreview_every = 2\n")
    return start_ingest(WAN22_STORAGE=str(generator.storage))


def test_previews_update_in_the_running_list_and_on_the_task_page(stack, browser):
    url = stack
    body = {"task": "demo", "prompt": "a slow fox", "sample_steps": 100}
    task_id = httpx.post(f"{url}/generate", json=body, timeout=10).json()["task_id"]
    try:
        browser.get(f"{url}/ui")
        shown = "return i && !i.hidden && i.complete && i.naturalWidth"
        assert wait_js(browser, f"const i = document.querySelector('#preview-{task_id}'); {shown}") == 64
        first = browser.execute_script(f"return document.querySelector('#preview-{task_id}').src")
        wait_js(browser, f"return document.querySelector('#preview-{task_id}').src !== {json.dumps(first)}")
        browser.get(f"{url}/ui#task/{task_id}")
        assert wait_js(browser, f"const i = document.querySelector('#task-preview'); {shown}") == 64
    finally:
        httpx.delete(f"{url}/tasks/{task_id}", timeout=10)


def test_submit_watch_progress_and_play_the_video(stack, browser):
    url = stack
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


def wait_until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {check}")


def full_page_screenshot(browser, name: str) -> None:
    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height + 140, 6000))
    browser.save_screenshot(str(ARTIFACTS / name))
    assert (ARTIFACTS / name).stat().st_size > 10_000


def click(browser, selector: str) -> None:
    """Find and click in one script: the page re-renders its lists every few seconds, so an element
    found in one call may be gone by the next."""
    script = f"const b = document.querySelector({json.dumps(selector)}); if (b) b.click(); return Boolean(b)"
    wait_js(browser, script, 10)


def confirm(browser, accept: bool = True) -> str:
    """Answer the page's confirmation dialog; returns its message."""
    wait_js(browser, "return document.querySelector('#confirm').open", 10)
    message = browser.find_element("id", "confirm-message").text
    browser.find_element("id", "confirm-ok" if accept else "confirm-cancel").click()
    wait_js(browser, "return !document.querySelector('#confirm').open", 10)
    return message


def dead_letter_a_job(redis_url: str, ingest_url: str) -> tuple[str, str]:
    async def run() -> tuple[str, str]:
        redis = connect(redis_url)
        try:
            async with httpx.AsyncClient(base_url=ingest_url) as http:
                return await dead_letter_t2v_job(redis, http)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def test_image_task_page_cancel_and_replay(stack, redis_server, browser, tmp_path):
    url, redis = stack, redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        task_id = submit_image_job(browser, redis, url, tmp_path / "input.png")
        follow_task_page(browser, redis, task_id)
        cancel_from_task_page(browser, redis, url)
        replay_from_overview(browser, redis, redis_server.url, url)
        charts_count_completed(browser)
    finally:
        redis.close()


def submit_image_job(browser, redis, url: str, image: Path) -> str:
    """An image-to-video job with an uploaded file: it travels as a data: URL in the JSON body."""
    from PIL import Image
    from selenium.webdriver.support.ui import Select

    Image.new("RGB", (64, 64), (30, 140, 200)).save(image)
    browser.get(f"{url}/ui")
    wait_js(browser, "return document.querySelectorAll('#task option').length > 0", 20)
    Select(browser.find_element("id", "task")).select_by_value("demo")
    browser.find_element("id", "prompt").send_keys("a lighthouse at dusk")
    browser.find_element("id", "seed").send_keys("42")
    browser.find_element("id", "sample_steps").send_keys("3")
    browser.find_element("id", "image").send_keys(str(image))
    wait_js(browser, "return document.querySelector('#image-preview img')", 10)
    browser.find_element("css selector", "#submit button[type=submit]").click()
    task_id = wait_js(browser, "const a = document.querySelector('#submit-result a'); return a && a.textContent", 20)
    [(_, job)] = redis.xrange(KEYS.jobs("demo"), min=redis.hget(KEYS.task(task_id), "queue_entry"), count=1)
    payload = json.loads(job["payload"])
    assert payload["task_id"] == task_id and (payload["seed"], payload["sample_steps"]) == (42, 3)
    assert base64.b64decode(payload["image"].removeprefix("data:image/png;base64,")) == image.read_bytes()
    return task_id


def follow_task_page(browser, redis, task_id: str) -> None:
    """Its task page follows it to the end: timeline, attempts, the video."""
    browser.find_element("css selector", "#submit-result a").click()
    wait_js(browser, f"return location.hash === '#task/{task_id}'", 5)
    duration = wait_js(
        browser,
        "const v = document.querySelector('#task-video'); return v && v.readyState >= 1 && v.duration",
        60,
    )
    assert duration > 0 and redis.hget(KEYS.task(task_id), "status") == "completed"
    kinds = browser.execute_script(
        "return [...document.querySelectorAll('#task-timeline li')].map((li) => li.dataset.type)"
    )
    assert kinds == ["accepted", "started", "progress", "completed"]
    # The page re-renders these panels as events arrive, so read them in one script
    # instead of holding element references that a re-render makes stale.
    wait_js(browser, "return document.querySelector('#task-params').textContent.includes('42')", 10)
    wait_js(browser, "return document.querySelector('#task-attempts').textContent.includes('completed')", 10)
    full_page_screenshot(browser, "dashboard-task.png")


def cancel_from_task_page(browser, redis, url: str) -> None:
    """A queued task's page: "Back" leaves it alone, "Cancel task" cancels it."""
    with httpx.Client(base_url=url) as http:
        queued = http.post("/generate", json={"task": "t2v-A14B", "prompt": "never mind"}).json()["task_id"]
    browser.get(f"{url}/ui#task/{queued}")
    click(browser, "#cancel-task")
    confirm(browser, accept=False)
    assert redis.hget(KEYS.task(queued), "status") == "queued"
    click(browser, "#cancel-task")
    assert queued in confirm(browser)
    wait_js(browser, "return document.querySelector('#task-status').textContent === 'cancelled'", 10)
    assert redis.hget(KEYS.task(queued), "status") == "cancelled"
    assert any(f["task_id"] == queued and f["type"] == "cancelled" for _, f in redis.xrevrange(KEYS.events, count=50))


def replay_from_overview(browser, redis, redis_url: str, url: str) -> None:
    """A dead letter replayed from the overview: back on its stream, its task queued again."""
    dead_task, dlq_id = dead_letter_a_job(redis_url, url)
    browser.get(f"{url}/ui")
    click(browser, f'#dlq tr[data-dlq="{dlq_id}"] button.replay')
    confirm(browser)
    wait_js(browser, f"return !document.querySelector('#dlq tr[data-dlq=\"{dlq_id}\"]')", 10)
    replayed = [f for _, f in redis.xrange(KEYS.jobs("t2v-A14B")) if f.get("_replay_of") == dlq_id]
    assert [f["task_id"] for f in replayed] == [dead_task]
    assert redis.hget(KEYS.task(dead_task), "status") == "queued"
    assert redis.xrange(KEYS.dlq, min=dlq_id, max=dlq_id) == []


def charts_count_completed(browser) -> None:
    """The charts count the completed videos (this test's, and the module's other one when it ran)."""
    script = "const c = window.wan22Charts; return c && c.counts.completed.reduce((a, b) => a + b)"
    assert wait_js(browser, script, 20) >= 1
    assert browser.find_elements("css selector", '#charts polyline[data-series="completed"]')
    full_page_screenshot(browser, "dashboard-overview.png")
