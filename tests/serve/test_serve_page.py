"""The page of ``dbnet serve`` in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``), driven by Selenium, uploads ``examples/street_sign.jpg`` to the real server
(the shipped ``general`` weights) and the screenshot shows the regions drawn where the answer puts
them; a bad file shows the server's one-line message; the JSON downloads. Skipped where no browser
is installed (``.ci/run`` installs one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from serve_client import ROOT, start_server, wait_until

pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no headless browser (apt-get install chromium chromium-driver)")
IMAGE = ROOT / "examples" / "street_sign.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(["--weights", "general", "--device", "cpu"], tmp_path_factory.mktemp("page") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1400", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def upload(browser, server, path: Path) -> str:
    """Open the page, pick ``path`` in its file input; the page's final state (done or error)."""
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))
    state = lambda: browser.execute_script("return document.body ? document.body.dataset.state : null")  # noqa: E731
    assert wait_until(lambda: state() in ("done", "error"), timeout=120, step=0.2), state()
    return state()


def magenta(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: the page's stroke colour (#ff00ff) in a BGR screenshot."""
    b, g, r = (image[:, :, k].astype(int) for k in range(3))
    return (r > 200) & (b > 200) & (g < 90)


def test_the_page_draws_the_regions_of_an_uploaded_photo(browser, server, downloads, tmp_path):
    from selenium.webdriver.common.by import By

    assert upload(browser, server, IMAGE) == "done", browser.find_element(By.ID, "status").text
    answer = browser.execute_script("return window.dbnetResult")
    entry = answer["images"][0]
    assert entry["file"] == IMAGE.name and len(entry["detections"]) >= 3
    status = browser.find_element(By.ID, "status").text
    assert status.startswith(f"{IMAGE.name}: {len(entry['detections'])} regions")

    canvas = browser.find_element(By.TAG_NAME, "canvas")
    shot = cv2.imdecode(np.frombuffer(canvas.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR)
    (tmp_path / "page.png").write_bytes(browser.get_screenshot_as_png())  # for a person looking into a failure
    scale = shot.shape[1] / int(canvas.get_attribute("width"))  # the canvas: the image, then a margin
    width, height = round(entry["width"] * scale), round(entry["height"] * scale)
    photo = cv2.resize(cv2.imread(str(IMAGE)), (width, height))
    assert magenta(photo).mean() < 0.001  # the photo itself has no such colour ...
    mask = magenta(shot)
    assert mask[:height, :width].mean() > 0.003  # ... the drawing has
    outlines = np.zeros((height, width), np.uint8)
    for det in entry["detections"]:  # every region's outline is where the answer puts it
        pts = np.asarray(det["points"]) * scale
        x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        assert mask[y0:y1, x0:x1].sum() >= (x1 - x0 + y1 - y0) / 2, det
        cv2.polylines(outlines, [np.round(pts).astype(np.int32)], True, 1, thickness=9)
    # the numbers sit in the margin, none on the image: no magenta there but the outlines
    assert (mask[:height, :width] & (outlines == 0)).sum() < 0.0005 * width * height
    assert mask[:, width + 2:].sum() > len(entry["detections"]) * 20
    regions = browser.find_elements(By.CSS_SELECTOR, "ol.regions li")  # the list of regions, one line each
    assert len(regions) == len(entry["detections"]) and "score" in regions[0].text

    browser.find_element(By.ID, "download").click()
    saved = downloads / f"{IMAGE.stem}.json"
    assert wait_until(saved.is_file, timeout=20)
    assert wait_until(lambda: saved.stat().st_size > 0 and json.loads(saved.read_text()) == answer, timeout=10)


def test_the_page_shows_the_servers_message_for_a_bad_file(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    cut = tmp_path / "cut.jpg"
    cut.write_bytes(IMAGE.read_bytes()[:5000])
    assert upload(browser, server, IMAGE) == "done"
    assert upload(browser, server, cut) == "error"
    assert browser.find_element(By.ID, "status").text.startswith("422: cut.jpg: truncated image file")
    # the previous file's result is gone, and there is nothing to detect again or download
    assert browser.find_elements(By.TAG_NAME, "canvas") == []
    assert browser.execute_script("return window.dbnetResult") is None
    assert not browser.find_element(By.ID, "again").is_enabled()
    assert not browser.find_element(By.ID, "download").is_enabled()


def test_a_tiff_the_browser_cannot_show_is_drawn_from_the_servers_image(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    tiff = tmp_path / "sign.tiff"
    assert cv2.imwrite(str(tiff), cv2.imread(str(IMAGE)))
    assert upload(browser, server, tiff) == "done", browser.find_element(By.ID, "status").text
    entry = browser.execute_script("return window.dbnetResult")["images"][0]
    assert entry["file"] == "sign.tiff" and entry["image"].startswith("data:image/jpeg;base64,")
    canvas = browser.find_element(By.TAG_NAME, "canvas")
    shot = cv2.imdecode(np.frombuffer(canvas.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR)
    width = round(entry["width"] * shot.shape[1] / int(canvas.get_attribute("width")))
    assert shot[:, :width].std() > 20  # the photo is drawn (not a blank canvas)
