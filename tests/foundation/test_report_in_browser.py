"""Open report.html in headless Chromium, as a reader would.

The report is rendered to a screenshot, and a script run inside the page checks that every image
decoded, that nothing overflows the page horizontally, and that every figure is shown at a
readable size. CI installs Debian's ``chromium``; elsewhere the test is skipped when no browser is
found (under ``CI=true`` a missing browser is a failure).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dropreg.experiments.report import write_report
from dropreg.experiments.runner import run_claim, select_claims
from dropreg.experiments.store import write_result

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)

CHECK_SCRIPT = """
<script>
window.addEventListener('load', () => {
  const problems = [];
  const imgs = Array.from(document.images);
  imgs.forEach((img, i) => {
    if (!img.complete || img.naturalWidth === 0) problems.push('image ' + i + ' did not decode');
    else if (img.getBoundingClientRect().width < 300) problems.push('image ' + i + ' too small');
  });
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 1)
    problems.push('horizontal overflow ' + page.scrollWidth + ' > ' + window.innerWidth);
  document.querySelectorAll('table').forEach((t, i) => {
    if (t.getBoundingClientRect().right > window.innerWidth + 1) problems.push('table ' + i);
  });
  const out = document.createElement('pre');
  out.id = 'layout-check';
  out.textContent = 'images=' + imgs.length + ';problems=' + problems.join('|');
  document.body.appendChild(out);
});
</script>
"""


def browser_or_skip() -> str:
    if BROWSER is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the report test (see .ci/run)")
        pytest.skip("no headless Chromium on this machine (apt-get install chromium)")
    return BROWSER


def run_browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1100,1400", *args],
        capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    for c in select_claims("cavazza2018.*"):
        write_result(out, run_claim(c, "quick", seed=0))
    write_report(out)
    return out


def test_report_renders_in_a_real_browser(report_dir: Path):
    html = (report_dir / "report.html").read_text()
    checked = report_dir / "checked.html"
    checked.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = run_browser("--virtual-time-budget=5000", "--dump-dom", checked.as_uri())
    match = re.search(r'<pre id="layout-check">images=(\d+);problems=(.*?)</pre>', dom.stdout)
    assert match, f"the check script did not run: {dom.stderr[-500:]}"
    n_images, problems = int(match.group(1)), match.group(2)
    assert n_images == html.count("data:image/png;base64,") > 0
    assert problems == "", problems

    shot = report_dir / "screenshot.png"
    run_browser(f"--screenshot={shot}", (report_dir / "report.html").as_uri())
    assert shot.read_bytes()[:4] == b"\x89PNG"
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels[..., :3].std() > 0.05  # not a blank page


def test_a_missing_image_is_caught(report_dir: Path):
    html = (report_dir / "report.html").read_text()
    broken = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,AAAA",
                    html, count=1)
    page = report_dir / "broken.html"
    page.write_text(broken.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = run_browser("--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert "did not decode" in dom.stdout
