"""Names that say what they are: in every dropreg package, an attribute named like a submodule is
that submodule, and every deprecated alias warns and returns the object of its new name."""

from __future__ import annotations

import importlib
import pkgutil
import types
import warnings

import pytest

import dropreg
import dropreg.analytic
from dropreg.analytic import rules


def _packages() -> list[types.ModuleType]:
    found = [dropreg]
    for info in pkgutil.walk_packages(dropreg.__path__, "dropreg."):
        if info.ispkg:
            found.append(importlib.import_module(info.name))
    return found


PACKAGES = _packages()


def test_the_walk_finds_the_packages() -> None:
    names = {p.__name__ for p in PACKAGES}
    assert {"dropreg", "dropreg.nn", "dropreg.masks", "dropreg.analytic",
            "dropreg.curvature", "dropreg.experiments"} <= names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_no_attribute_shadows_a_submodule(package: types.ModuleType) -> None:
    """``package.<name>`` for each submodule ``<name>``, after importing every submodule, is
    that module (``import dropreg.analytic.explicit as m`` binds the module)."""
    for info in pkgutil.iter_modules(package.__path__):
        if info.name == "__main__":
            continue
        full = f"{package.__name__}.{info.name}"
        module = importlib.import_module(full)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # a submodule is no alias
            attr = getattr(package, info.name)
        assert attr is module, f"{full} is {attr!r}, not the module"


def test_renamed_curvature_functions_and_their_modules() -> None:
    import dropreg.curvature as curvature
    from dropreg.curvature import alignment, diagnosis, trace

    assert curvature.stochastic_trace is trace.stochastic_trace
    assert curvature.noise_alignment is alignment.noise_alignment
    assert curvature.diagnose is diagnosis.diagnose
    assert isinstance(curvature.trace, types.ModuleType)
    assert isinstance(curvature.alignment, types.ModuleType)


@pytest.mark.parametrize("name", dropreg.analytic.DEPRECATED_RULES)
def test_deprecated_rule_aliases_warn_and_return_the_new_object(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"dropreg.analytic.rules.{name}"):
        old = getattr(dropreg.analytic, name)
    assert old is getattr(rules, name)
    assert name not in dropreg.analytic.__all__
    with pytest.warns(DeprecationWarning):
        exec(f"from dropreg.analytic import {name}", {})


def test_rules_namespace_has_every_rule_and_explicit_is_the_module() -> None:
    assert set(rules.__all__) == set(dropreg.analytic.DEPRECATED_RULES) | {"explicit"}
    assert rules.explicit().name == "R_approx"
    assert dropreg.analytic.explicit is importlib.import_module("dropreg.analytic.explicit")
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        dropreg.analytic.nothing  # noqa: B018
