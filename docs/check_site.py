"""Check the built documentation as a reader's browser sees it.

* every internal link (``href``/``src`` of each page) points to a file that exists, and its
  ``#fragment`` to an element id of that page;
* every page with images is opened in headless Chromium and every image must have decoded
  (``img.complete`` and a natural width), gallery figures included.

Usage: ``python docs/check_site.py [docs/_build/html]``; exit status 1 on any problem, 2 when no
browser is found (CI installs Debian's ``chromium``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const bad = [];
  const imgs = Array.from(document.images);
  imgs.forEach((img) => {
    if (!img.complete || img.naturalWidth === 0) bad.push(img.getAttribute('src'));
  });
  const out = document.createElement('pre');
  out.id = 'site-check';
  out.textContent = 'images=' + imgs.length + ';bad=' + bad.join('|');
  document.body.appendChild(out);
});
</script>"""


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "img":
            self.images += 1
        for key in ("href", "src"):
            if a.get(key) and tag in ("a", "img", "link", "script"):
                self.links.append(a[key])


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def check_links(root: Path) -> tuple[int, list[str]]:
    pages = {p: parse(p) for p in root.rglob("*.html")}
    problems, n = [], 0
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "data:", "javascript:")):
                continue
            n += 1
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{path.relative_to(root)}: broken link {link}")
                continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if frag not in ids:
                    problems.append(f"{path.relative_to(root)}: missing anchor {link}")
    return n, problems


def find_browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)


def check_images(root: Path, browser: str) -> tuple[int, int, list[str]]:
    problems, n_pages, n_images = [], 0, 0
    with tempfile.TemporaryDirectory() as profile:
        for path in sorted(root.rglob("*.html")):
            if "<img" not in path.read_text(encoding="utf-8", errors="replace"):
                continue
            n_pages += 1
            copy = path.with_name(f".site-check-{path.name}")
            copy.write_text(path.read_text(encoding="utf-8").replace(
                "</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
            try:
                dom = subprocess.run(
                    [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
                     copy.as_uri()], capture_output=True, text=True, timeout=120).stdout
            finally:
                copy.unlink(missing_ok=True)
            m = re.search(r'<pre id="site-check">images=(\d+);bad=(.*?)</pre>', dom)
            if not m:
                problems.append(f"{path.relative_to(root)}: the page did not load in the browser")
                continue
            n_images += int(m.group(1))
            if m.group(2):
                problems.append(f"{path.relative_to(root)}: images did not decode: {m.group(2)}")
    return n_pages, n_images, problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "docs/_build/html").resolve()
    if not (root / "index.html").is_file():
        print(f"check_site: no built site at {root} (run `make docs`)", file=sys.stderr)
        return 1
    n_links, problems = check_links(root)
    gallery = list((root / "auto_examples").glob("*.html"))
    browser = find_browser()
    if browser is None:
        print("check_site: no headless Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    n_pages, n_images, img_problems = check_images(root, browser)
    problems += img_problems
    gallery_imgs = sum(parse(p).images for p in gallery)
    if gallery and gallery_imgs == 0:
        problems.append("the gallery pages show no image")
    for p in problems:
        print(p)
    print(f"check_site: {n_links} internal links, {n_images} images on {n_pages} pages "
          f"({gallery_imgs} on the {len(gallery)} gallery pages) in {browser}: "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
