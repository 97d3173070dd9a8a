"""Every Python example of the README runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.setenv("DROPREG_CACHE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[index]
    if "@claim(" in code:  # do not leave the example claim registered for other tests
        from dropreg.experiments import claims

        monkeypatch.setattr(claims, "_REGISTRY", dict(claims._REGISTRY))
    import sys
    import types

    module = types.ModuleType("readme_example")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, "readme_example", module)
    exec(compile(code, f"README.md block {index}", "exec"), module.__dict__)
