"""The web page of `maskinv serve` in a real browser (Debian's headless chromium via selenium):
enrol an identity from a file, verify an unmasked and a masked photo, look at the answers.
Screenshots go to docs/img/serve_*.png when MASKINV_SCREENSHOTS=1 (public-domain astronaut)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers.serve import REPO, Server, faces, jpeg, skip_reason

_why = skip_reason()
if _why is None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        _why = "selenium is not installed (pip install 'maskinv[dev]')"
if _why is None and not (shutil.which("chromium") and shutil.which("chromedriver")):
    _why = "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver; .ci/run does it)"
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,760",
              "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):  # a synthetic webcam
        opts.add_argument(a)
    d = webdriver.Chrome(service=ChromeService(executable_path=shutil.which("chromedriver")), options=opts)
    yield d
    d.quit()


def test_page_enrols_and_verifies(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from maskinv.serve.keys import add_key

    key = add_key(tmp_path / "keys.json", "desk", ["admin"], 100000)
    f = faces()
    for name in ("astronaut", "masked"):
        (tmp_path / f"{name}.jpg").write_bytes(jpeg(f[name]))
    srv = Server(tmp_path, "--keep-crops", str(tmp_path / "crops")).start()   # the opt-in to keep enrolment crops
    shots = os.environ.get("MASKINV_SCREENSHOTS") == "1"
    try:
        d = browser
        wait = WebDriverWait(d, 60)
        d.get(srv.url + "/")
        d.find_element(By.ID, "key").send_keys(key)
        d.execute_script("document.getElementById('key').dispatchEvent(new Event('change'))")
        d.find_element(By.ID, "enrol-name").send_keys("Eileen Collins")
        d.find_element(By.ID, "enrol-files").send_keys(str(tmp_path / "astronaut.jpg"))
        d.find_element(By.ID, "enrol-go").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "enrol-result"), "enrolled Eileen Collins"))
        wait.until(EC.text_to_be_present_in_element((By.ID, "identities"), "Eileen Collins"))
        kept = list((tmp_path / "crops").rglob("*.jpg"))
        assert len(kept) == 1 and (kept[0].parent / "identity.txt").read_text().strip() == "Eileen Collins"
        wait.until(lambda _: len(Select(d.find_element(By.ID, "against")).options) == 2)
        Select(d.find_element(By.ID, "against")).select_by_value("Eileen Collins")
        results = {}
        for name in ("astronaut", "masked"):
            d.find_element(By.ID, "probe-file").clear()
            d.find_element(By.ID, "probe-file").send_keys(str(tmp_path / f"{name}.jpg"))
            d.find_element(By.ID, "check-go").click()
            wait.until(lambda _: "·" in d.find_element(By.ID, "verdict").text)
            results[name] = {k: d.find_element(By.ID, k).text for k in ("verdict", "condition", "why")}
            assert d.find_element(By.ID, "crop").get_attribute("src").startswith("data:image/jpeg;base64,")
            assert d.find_element(By.ID, "bar").is_displayed()
            if shots:
                out = REPO / "docs" / "img"
                out.mkdir(parents=True, exist_ok=True)
                d.save_screenshot(str(out / f"serve_verify_{name}.png"))
        assert results["astronaut"]["verdict"].startswith("ACCEPT"), results
        assert results["astronaut"]["condition"].startswith("unmasked"), results
        assert "(uu)" in results["astronaut"]["why"]
        assert results["masked"]["condition"].startswith("masked"), results
        assert "(mu)" in results["masked"]["why"] and "M-U" in results["masked"]["why"]
        assert results["masked"]["verdict"].split(" ")[0] in ("ACCEPT", "REJECT")
        # the webcam path: chromium's fake camera shows a test pattern, so the snapshot reaches the
        # server as a JPEG upload and is refused for having no face
        d.find_element(By.ID, "enrol-name").clear()
        d.find_element(By.ID, "enrol-name").send_keys("webcam person")
        d.find_element(By.ID, "enrol-webcam").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "enrol-result"), "1 snapshot(s) ready"))
        d.find_element(By.ID, "enrol-go").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "enrol-result"), "webcam0.jpg"))
        assert "no face detected" in d.find_element(By.ID, "enrol-result").text
    finally:
        srv.stop()
