"""The docs site check (docs/check_site.py) catches broken links, anchors and images."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "check_site.py"
spec = importlib.util.spec_from_file_location("check_site", SCRIPT)
check_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_site)

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082")


def site(tmp_path: Path, link: str = "b.html#x", image: bytes = PNG_1PX) -> Path:
    (tmp_path / "auto_examples").mkdir(parents=True)
    (tmp_path / "index.html").write_text(f'<html><body><a href="{link}">b</a></body></html>')
    (tmp_path / "b.html").write_text('<html><body><h1 id="x">x</h1></body></html>')
    (tmp_path / "auto_examples" / "fig.png").write_bytes(image)
    (tmp_path / "auto_examples" / "ex.html").write_text(
        '<html><body><img src="fig.png"><a href="../index.html">up</a></body></html>')
    return tmp_path


def test_links_and_anchors(tmp_path):
    assert check_site.check_links(site(tmp_path))[1] == []
    broken = site(tmp_path / "b", link="c.html")
    assert any("broken link c.html" in p for p in check_site.check_links(broken)[1])
    anchor = site(tmp_path / "c", link="b.html#nowhere")
    assert any("missing anchor" in p for p in check_site.check_links(anchor)[1])


@pytest.mark.skipif(check_site.find_browser() is None and not shutil.which("chromium"),
                    reason="no headless Chromium")
def test_undecodable_gallery_image_fails(tmp_path):
    good = site(tmp_path / "good")
    assert check_site.main(["x", str(good)]) == 0
    bad = site(tmp_path / "bad", image=b"\x89PNG not really")
    assert check_site.main(["x", str(bad)]) == 1
