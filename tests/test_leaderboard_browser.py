"""The leaderboard in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) opens the
fixture site from a local HTTP server, sees no console error, no failed request and no request outside
127.0.0.1, no dialog from the ``<script>`` planted in the results; a click on a header sorts the table; and a
screenshot is saved (also into $STENCE_BENCH_ARTIFACTS when set).

Skips without /usr/bin/chromium (a user's machine); STENCE_BENCH_STRICT=1 (CI) turns that skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import need
from test_leaderboard import MINI, fixture_registry

from stence_bench.leaderboard import build_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS_ENV = "STENCE_BENCH_ARTIFACTS"
#: Flags that work on a machine with no network and no display (and as root).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")
#: Every dialog the page opens is recorded instead of shown.
DIALOG_TRAP = ("window.__dialogs = [];"
               "['alert', 'confirm', 'prompt'].forEach(function (n) {"
               " window[n] = function (m) { window.__dialogs.push(n + ':' + m); }; });")


class _Handler(SimpleHTTPRequestHandler):
    log: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):  # noqa: ARG002 - the signature of the base class
        self.log.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    site = tmp_path_factory.mktemp("browser") / "site"
    build_site([MINI], site, registry=fixture_registry())
    log: list[tuple[str, int]] = []
    handler = type("Handler", (_Handler,), {"log": log})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", log
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    need(CHROMIUM.is_file() and CHROMEDRIVER.is_file(),
         f"{CHROMIUM} and {CHROMEDRIVER} not found (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(30)
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": DIALOG_TRAP})
    browser.get_log("browser"), browser.get_log("performance")  # the browser's own start-up
    yield browser
    browser.quit()


def _open(driver, url):
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"


def _problems(driver, base):
    """Console errors and warnings, failed requests and requests leaving 127.0.0.1 since the last call."""
    problems = [f"console {e['level']}: {e['message']}" for e in driver.get_log("browser")
                if e["level"] in ("SEVERE", "WARNING")]
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            # the site's documents ask only for the site; nothing at all goes to the network elsewhere
            url, document = params["request"]["url"], params.get("documentURL", "")
            inside = url.startswith(base + "/") or url.startswith("data:")
            from_site = document.startswith(base + "/")
            if not inside and (from_site or url.split(":", 1)[0] in ("http", "https", "ws", "wss")):
                problems.append(f"request outside the site: {url} (from {document})")
        elif method == "Network.loadingFailed":
            problems.append(f"failed request: {params.get('errorText')} ({params.get('type')})")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
    return problems


def _column(driver, col):
    return driver.execute_script(
        "var col = arguments[0];"
        "return Array.from(document.querySelectorAll('#board tbody tr')).map(function (tr) {"
        " var v = tr.children[col].getAttribute('data-v'); return v === '' ? null : parseFloat(v); });", col)


def _save(driver, path: Path, name: str) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    artifacts = os.environ.get(ARTIFACTS_ENV)
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)


def test_the_site_in_chromium(driver, server, tmp_path):
    from selenium.webdriver.common.by import By

    base, log = server
    pages = ["index.html", "mini/index.html", "mini/ptbxl.superdiagnostic.provenance.html",
             "mini/ptbxl.superdiagnostic.html", "mini/stenosis.70.html"]
    for page in pages:
        _open(driver, f"{base}/{page}")
        assert _problems(driver, base) == [], page
        assert driver.execute_script("return window.__dialogs") == [], page  # the planted <script> never ran
        assert "<script>alert(1)</script>" not in driver.execute_script("return document.body.innerHTML")
        if page == "mini/index.html":  # shown as text
            assert "<script>alert(1)</script>" in driver.find_element(By.TAG_NAME, "body").text

    # sort the stenosis table by the 100 % column (higher is better: best first), then reverse
    button = driver.find_element(By.XPATH, "//table[@id='board']//thead//button[normalize-space()='100 %']")
    col = int(button.get_attribute("data-col"))
    before = _column(driver, col)
    rows_before = [tr.text.split("\n")[0] for tr in driver.find_elements(By.CSS_SELECTOR, "#board tbody tr")]
    button.click()
    after = _column(driver, col)
    assert after == sorted(before, reverse=True) and after != before
    assert button.find_element(By.XPATH, "..").get_attribute("aria-sort") == "descending"
    rows_after = [tr.text.split("\n")[0] for tr in driver.find_elements(By.CSS_SELECTOR, "#board tbody tr")]
    assert sorted(rows_after) == sorted(rows_before) and rows_after != rows_before
    button.click()
    assert _column(driver, col) == sorted(before)
    _save(driver, tmp_path / "leaderboard-desktop.png", "leaderboard-desktop.png")

    # on the ptbxl page, cells without a value (missing) sort last whichever the direction
    _open(driver, f"{base}/mini/ptbxl.superdiagnostic.html")
    button = driver.find_element(By.XPATH, "//table[@id='board']//thead//button[normalize-space()='10 %']")
    col = int(button.get_attribute("data-col"))
    for _ in range(2):
        button.click()
        values = _column(driver, col)
        assert values[-2:] == [None, None] and None not in values[:2]
    driver.set_window_size(390, 844)  # a phone
    _save(driver, tmp_path / "leaderboard-phone.png", "leaderboard-phone.png")
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 400  # only the table scrolls
    assert _problems(driver, base) == []
    served = [(path, code) for path, code in log if code not in (200, 304)]  # 304: not modified, from the cache
    assert log and not served, served
    assert {path for path, _ in log} >= {"/index.html", "/static/stence.css", "/static/sort.js"}
