"""End to end in a real headless Chromium (Debian's): drop a video on the page, read the result.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright (no downloaded browser;
``tests/support/browser.py``, whose close cannot hang the run).
The result page's screenshot is written to the test's temp folder, and to
``docs/result-page.png`` when ``FAKESCOPE_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakescope.paths import PROJECT_ROOT
from tests.support.browser import CHROMIUM, CLOSE_TIMEOUT_S, killed_if_stuck, launched_chromium
from tests.support.c2pa_media import DIGITAL_CAPTURE, make_test_ca, manifest, sign_video
from tests.support.media import make_face_video
from tests.support.web_support import LiveServer, web_settings

ROOT = PROJECT_ROOT
SCREENSHOT = ROOT / "docs" / "result-page.png"
HEATMAP_SCREENSHOT = ROOT / "docs" / "result-page-heatmap.png"

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason=f"{CHROMIUM} not installed (Debian package chromium)"
)

DROP_FILE = """([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "video/mp4"}));
  const zone = document.getElementById("drop");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true,
                                            cancelable: true}));
  }
}"""


@pytest.fixture(scope="module")
def site(triton, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("web-browser")
    with LiveServer(web_settings(root, triton.address.grpc_url)) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def checked(site: LiveServer, browser: Any, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One visitor drops a face video on the upload page and lands on its result page."""
    folder = tmp_path_factory.mktemp("web-browser-video")
    camera = manifest(DIGITAL_CAPTURE, generator="Test Camera", agent="Camera firmware")
    video = sign_video(
        make_face_video(folder / "raw.mp4"), folder / "interview.mp4", make_test_ca(), camera
    )
    context = browser.new_context(
        viewport={"width": 1000, "height": 900},
        device_scale_factor=1,
        locale="en-GB",
        timezone_id="UTC",
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{site.url}/")
    page.evaluate(DROP_FILE, [base64.b64encode(video.read_bytes()).decode(), video.name])
    page.wait_for_selector("#progress-box:not([hidden])", timeout=10_000)
    page.wait_for_url("**/jobs/*", timeout=120_000)
    page.wait_for_selector("#verdict", timeout=30_000)
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=10_000)
    job_id = page.url.rsplit("/", 1)[-1]
    job = context.request.get(f"{site.url}/api/v1/jobs/{job_id}").json()
    yield {"context": context, "page": page, "job": job, "errors": errors}
    with (
        killed_if_stuck(CLOSE_TIMEOUT_S, "closing the browser context"),
        contextlib.suppress(playwright_api.Error),  # the connection is gone once it was killed
    ):
        context.close()


def test_result_page_shows_verdict_and_timeline_when_video_dropped(checked: dict, tmp_path):
    page, job = checked["page"], checked["job"]
    assert job["status"] == "done"
    headline = page.inner_text("#verdict")
    expected = {"FAKE": ("manipulated",), "REAL": ("face manipulation",)}[job["verdict"]["label"]]
    assert any(word in headline for word in expected)
    assert page.inner_text("#score") == f"{round(100 * job['verdict']['fake_probability'])} %"
    scored = [s for s in job["verdict"]["frame_scores"] if s is not None]
    assert page.locator("#timeline svg.timeline circle").count() == len(scored) > 0
    assert page.locator("#faces img").count() == len(job["faces"]) > 0
    widths = page.eval_on_selector_all("#faces img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths)
    assert "interview.mp4" in page.inner_text(".history")
    credentials = page.locator("#content-credentials")  # beside the verdict, its own panel
    assert credentials.is_visible()
    assert "signer not on your trust list" in credentials.inner_text()
    assert "recorded by a camera" in credentials.inner_text()
    if not job["verdict"]["model_trained"]:
        assert "not findings" in page.inner_text(".caveat")
    assert checked["errors"] == []  # no script error, no CSP violation, nothing from elsewhere
    shot = tmp_path / "result-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FAKESCOPE_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_result_page_shows_heatmap_when_face_toggle_clicked(checked: dict, tmp_path):
    page = checked["page"]
    toggle = page.locator("#faces .heatmap-toggle").first
    toggle.click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#faces img.heatmap');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=30_000,
    )
    assert toggle.get_attribute("aria-pressed") == "true"
    assert page.locator("#faces img.heatmap").get_attribute("src").startswith("data:image/png")
    assert "lowered the fake score" in page.inner_text("#heatmap-legend")
    assert checked["errors"] == []
    shot = tmp_path / "result-page-heatmap.png"
    faces, legend = (page.locator(s).bounding_box() for s in ("#faces", "#heatmap-legend"))
    assert faces and legend
    bottom = legend["y"] + legend["height"]
    top = faces["y"] + page.evaluate("() => window.scrollY")  # page, not viewport, pixels
    clip = {"x": faces["x"], "y": top, "width": faces["width"], "height": bottom - faces["y"]}
    page.screenshot(path=str(shot), clip=clip, full_page=True)
    if os.environ.get("FAKESCOPE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, HEATMAP_SCREENSHOT)
    toggle.click()  # and back to the thumbnail
    assert page.locator("#faces img.heatmap").count() == 0


def test_admin_page_counts_the_use_when_visitor_checked_a_video(checked: dict, site):
    page = checked["page"]
    page.goto(f"{site.url}/admin")  # leaving the result page sends its time-on-page beacon
    assert page.inner_text("#uses-today") == "1"
    assert page.inner_text("#uses-total") == "1"
    assert int(page.inner_text("#page-views")) >= 2  # upload page + result page
    deadline = time.monotonic() + 10
    while page.inner_text("#avg-time") == "–" and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    assert page.inner_text("#avg-time").endswith(" s")
    today = page.locator("#uses-per-day tbody tr").first.inner_text().split()
    assert today[-1] == "1" and today[0] == time.strftime("%Y-%m-%d", time.gmtime())
