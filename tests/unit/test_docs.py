from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_readme_variables_table_matches_argument_specs():
    done = subprocess.run(
        [sys.executable, "tools/variables_table.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
