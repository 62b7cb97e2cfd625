"""The documentation: a strict offline build with the executed gallery, and pages that cannot drift from the code."""

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import sknc
from sknc.metrics import REPORT_KEYS

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
MODULES = ("metrics", "geometry", "theory", "ufm", "extract", "classifier", "decision", "ood", "losses", "nn",
           "callbacks", "scoring", "study", "transformers", "model_selection", "datasets", "plotting", "exceptions")


def _registry_key(key):
    return re.sub(r"_m\d+$", "_m<m>", key)


def test_report_keys_registry_covers_every_key_a_report_returns():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    H = rng.standard_normal((30, 5)) + 3 * np.eye(3, 5)[y]
    W = rng.standard_normal((3, 5))
    Y = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0],
                  [1, 1, 1, 0]] * 6)
    HY = rng.standard_normal((len(Y), 6)) + 3 * (Y @ np.eye(4, 6))
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sknc.NCWarning)
        for report in (sknc.nc_report(H, y), sknc.nc_report(H, y, W=W, b=np.zeros(3)),
                       sknc.nc_report(HY, Y, W=rng.standard_normal((4, 6))),
                       sknc.nc_report(H, y, W=W, pair_sample=50), sknc.nc_report(H, y, ood_features=H[:5] + 1),
                       sknc.nc_report(H, y, ncc_accuracy=True), sknc.nc_report(H, y, feature_rank=True)):
            seen |= {_registry_key(k) for k in report.index}
    registered = [info.key for info in REPORT_KEYS]
    assert len(registered) == len(set(registered))
    assert seen == set(registered)
    assert "tagwise_scale_m<m>" in seen  # the multi-label case really produced per-multiplicity keys


def _autosummary_entries():
    text = (DOCS / "api.rst").read_text()
    entries = set()
    for block in re.findall(r"\.\. autosummary::\n((?:[ \t]+.*\n|\n)+)", text):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith(":"):
                entries.add(line)
    return entries


def test_api_page_lists_every_public_name_once_under_its_documented_path():
    entries = _autosummary_entries()
    expected = set()
    for module in MODULES:
        mod = importlib.import_module(f"sknc.{module}")
        for name in mod.__all__:
            expected.add(name if name in sknc.__all__ else f"{module}.{name}")
    text = (DOCS / "api.rst").read_text()
    for constant in ("metrics.REPORT_KEYS", "scoring.NC_METRICS", "scoring.OPT_IN_METRICS"):  # autodata, not autosummary
        assert f".. autodata:: sknc.{constant}" in text
        expected.discard(constant)
    missing = sorted(expected - entries)
    assert not missing, f"public names missing from docs/api.rst: {missing}"
    unknown = sorted(entries - expected)
    assert not unknown, f"docs/api.rst lists names that are not public: {unknown}"


def test_every_public_name_has_a_runnable_example():
    lacking = []
    for module in MODULES:
        mod = importlib.import_module(f"sknc.{module}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not callable(obj):
                continue  # constants (REPORT_KEYS, NC_METRICS) are described, not run
            if ">>> " not in (obj.__doc__ or ""):
                lacking.append(f"{module}.{name}")
    assert not lacking, f"public objects without an Examples section: {lacking}"


def test_examples_follow_the_gallery_layout():
    examples = ROOT / "examples"
    assert (examples / "README.txt").exists()
    scripts = sorted(p.name for p in examples.glob("*.py"))
    assert scripts and all(name.startswith("plot_") for name in scripts), scripts
    for path in examples.glob("plot_*.py"):
        head = path.read_text().lstrip()
        assert head.startswith('"""'), path.name  # the docstring becomes the page's title and introduction
        title = head[3:].lstrip().splitlines()
        assert len(title) > 1 and set(title[1].strip()) == {"="}, f"{path.name}: needs an '=' underlined title"


@pytest.mark.slow
def test_docs_build_offline_strict_with_the_executed_gallery(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("pydata_sphinx_theme")
    html = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-n", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
         str(DOCS), str(html)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # every example ran and drew at least one figure
    for script in sorted((ROOT / "examples").glob("plot_*.py")):
        page = (html / "auto_examples" / f"{script.stem}.html").read_text()
        assert f'src="../_images/sphx_glr_{script.stem}_001.png"' in page, script.name
        for stray in ("Text(0", "&lt;matplotlib.", "Figure size", "&lt;function", "<function"):  # a bare repr
            assert stray not in page, (script.name, stray)

    # math renders offline: MathJax ships with the pages, nothing is fetched from a CDN
    theory = (html / "theory.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in theory
    assert "cdn.jsdelivr" not in theory and "cdnjs" not in theory
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()

    # the metrics table was generated from the registry, one row per key
    table = (DOCS / "generated" / "metrics_table.rst").read_text()
    rows = re.findall(r"^   \* - ``([^`]+)``", table, flags=re.M)
    assert rows == [info.key for info in REPORT_KEYS]
    reference = (html / "metrics_reference.html").read_text()
    assert all(key.replace("<", "&lt;").replace(">", "&gt;") in reference for key in rows)

    api = (html / "api.html").read_text()
    for entry in _autosummary_entries():
        assert entry.split(".")[-1] in api, entry
    for page in ("getting_started", "theory", "guides/own_model", "guides/studies", "guides/multilabel",
                 "guides/imbalanced", "guides/ufm_theory"):
        assert (html / f"{page}.html").exists(), page


def test_readme_quick_start_matches_ci_and_its_links_exist():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(pip install[^\n]*)\n```", readme)
    assert commands[:2] == ['pip install torch==2.13.0 -e ".[plot]" && sknc demo',
                            'pip install torch==2.13.0 -e ".[test]" && python -m pytest -ra']
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()
    # no install line may pull an unpinned torch (the multi-GB CUDA build on a CPU machine)
    for line in re.findall(r"pip install[^\n`]*", readme):
        assert "torch" not in line or "torch==" in line, line
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
