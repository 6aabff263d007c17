"""The report as a person sees it: headless Chromium opens the page, every figure renders
(plotly's SVG with drawn traces), the page logs nothing to the console, and a screenshot is saved.

Needs Debian's `chromium` (/usr/bin/chromium); skipped with a reason when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from moesim.report import write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
VIRTUAL_TIME_MS = 15000  # lets plotly finish drawing before the DOM is dumped
TIMEOUT_S = 120

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="headless Chromium not installed "
                       "(apt-get install -y chromium); the report's browser test needs it"),
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def test_report_renders_in_chromium(tmp_path, mixtral, results_file):
    page = tmp_path / "report.html"
    report = write_report(page, mixtral, results=results_file, results_hardware="cpu-localhost")
    url = page.as_uri()

    dumped = chromium(tmp_path, "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={VIRTUAL_TIME_MS}",
                      "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # a healthy page logs nothing: any console message is an error here
    sections = re.split(r'<section class="figure" data-figure="', dumped.stdout)[1:]
    rendered = {}
    for section in sections:
        key = section.split('"', 1)[0]
        rendered[key] = (section.count('class="main-svg"'), len(re.findall(r'<g class="trace[ "]', section)))
    assert set(rendered) == set(report.figures)
    for key, (svgs, traces) in rendered.items():
        assert svgs >= 1 and traces >= 1, (key, svgs, traces)

    shot = tmp_path / "report.png"
    taken = chromium(tmp_path, f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--window-size=1280,3600",
                     f"--screenshot={shot}", url)
    assert taken.returncode == 0 and shot.stat().st_size > 50_000, taken.stderr[-2000:]
