import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_docs_build_offline_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    docs = Path(__file__).parents[1] / "docs"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
         str(docs), str(tmp_path / "html")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("nc_report", "UFMSolver", "PALClassifier", "TagWiseAverageClassifier", "pal_optimum"):
        assert name in api
