"""Fixtures of the dashboard tests: a seeded store behind a real ``npo serve`` and a
headless Chromium from Debian's packages driven by Selenium through /usr/bin/chromedriver
(installed by scripts/ensure-chromium.sh; never downloaded). Without chromium the browser
tests are skipped, unless ``CI=true``, where they fail. Screenshots go to
``test-artifacts/screenshots/`` (``$NPO_ARTIFACTS`` overrides ``test-artifacts``)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from web_helpers import Site, seed

CHROMEDRIVER = os.environ.get("NPO_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("NPO_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = seed(tmp_path_factory.mktemp("web"))
    try:
        yield s
    finally:
        s.server.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (one per test module)."""
    binary = _chromium()
    why = None
    if binary is None or not Path(CHROMEDRIVER).exists():
        why = "Debian's chromium / chromium-driver are not installed (scripts/ensure-chromium.sh)"
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests are required on CI: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    out = ARTIFACTS / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out
