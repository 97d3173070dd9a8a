"""Sphinx configuration of the dropreg documentation (``make docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("MPLBACKEND", "Agg")

import dropreg  # noqa: E402

project = "dropreg"
author = "The dropreg developers"
copyright = "2026, the dropreg developers"
release = version = dropreg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json",
                    "auto_examples/*.md5", "sg_execution_times.rst"]
myst_enable_extensions = ["dollarmath", "amsmath", "deflist", "colon_fence"]
myst_heading_anchors = 3
# "more than one target" for a bare attribute name such as ``p`` (several classes have one):
# ambiguous, not broken. Broken links are still errors.
suppress_warnings = ["myst.header", "ref.python"]

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True, "show-inheritance": True, "ignore-module-all": True,
    # scikit-learn's generated metadata-routing setters cite scikit-learn's own glossary
    "exclude-members": "set_fit_request,set_score_request,set_predict_request",
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

# Math: MathJax from Debian's libjs-mathjax when it is installed (CI installs it), copied into the
# site so that formulas render without a network; else the MathJax CDN (Sphinx's default).
LOCAL_MATHJAX = Path("/usr/share/javascript/mathjax")
MATHJAX_PARTS = ("MathJax.js", "config/TeX-AMS_CHTML.js", "extensions", "jax/input/TeX",
                 "jax/output/CommonHTML", "jax/element", "localization/en",
                 "fonts/HTML-CSS/TeX/woff")
if (LOCAL_MATHJAX / "MathJax.js").is_file():
    mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
    # MathJax 2 reads its own configuration: process the math spans inside MyST's sections,
    # which MyST marks "tex2jax_ignore" for MathJax 3's processHtmlClass option
    mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]],
                                   "displayMath": [["\\[", "\\]"]],
                                   "processClass": "tex2jax_process|mathjax_process|math",
                                   "ignoreClass": "tex2jax_ignore|mathjax_ignore"}}


def _copy_mathjax(app, exception) -> None:  # noqa: ANN001 - Sphinx hook
    import shutil

    if exception is not None or not (LOCAL_MATHJAX / "MathJax.js").is_file():
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        src, out = LOCAL_MATHJAX / part, dest / part
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, dirs_exist_ok=True)
        else:
            shutil.copy2(src, out)


def setup(app) -> None:  # noqa: ANN001 - Sphinx hook
    app.connect("build-finished", _copy_mathjax)


html_theme = "furo"
html_title = f"dropreg {release}"
html_static_path: list[str] = []

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py",   # execute every example, so each page shows its output
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": True,
    "show_memory": False,
    "write_computation_times": False,
}
