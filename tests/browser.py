"""Headless Chromium (Debian's chromium and chromium-driver) for page tests, driven by Selenium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

requires_browser = pytest.mark.skipif(
    not os.environ.get("CDS_TEST_BROWSER") and not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="no Chromium (CDS_TEST_BROWSER unset); .ci/run installs it",
)


def headless_chromium(profile_dir: Path, window: str = "1200,1000") -> webdriver.Chrome:
    """A headless Chromium that makes no connections of its own (the flags this machine needs)."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile_dir}", f"--window-size={window}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
