"""Files dropreg writes get the mode a plain ``open(path, "w")`` would give them."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest

from dropreg._io import atomic_write_bytes, atomic_write_text, current_umask
from dropreg.experiments.claims import Figure, Measurement
from dropreg.experiments.report import write_report
from dropreg.experiments.store import ClaimResult, write_result

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082")


def make_result() -> ClaimResult:
    return ClaimResult(id="dropreg.t", paper="dropreg", statement="s", verdict="reproduced",
                       measurements=[Measurement("m", 1.0, expected=1.0, tolerance=0.1)],
                       profile="quick", seed=1, figures=[Figure("f", "caption", PNG_1PX)])

pytestmark = pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_mode_follows_the_umask(tmp_path, mask, expected):
    with umask(mask):
        assert current_umask() == mask
        atomic_write_text(tmp_path / "a.txt", "x")
    assert mode(tmp_path / "a.txt") == expected


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with umask(0o077):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640


def test_report_results_and_figures_readable_by_others(tmp_path):
    with umask(0o022):
        write_result(tmp_path, make_result())
        md, html = write_report(tmp_path)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert md in written and html in written
    assert any(p.suffix == ".png" for p in written) and any(p.suffix == ".json" for p in written)
    assert {p.name: mode(p) for p in written} == {p.name: 0o644 for p in written}
