"""Run the atheris fuzz targets in ``tests/fuzz/`` for a bounded number of
inputs. Run them for longer by hand (see each target's docstring)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(
        importlib.util.find_spec("atheris") is None, reason="atheris is not installed"
    ),
]

FUZZ = Path(__file__).parent / "fuzz"


@pytest.mark.parametrize(
    ("target", "runs"),
    [
        pytest.param("hosts", 200_000, id="hosts"),
        pytest.param("wsgi", 6_000, id="wsgi"),
    ],
)
def test_fuzz_target(target: str, runs: int, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "seeds" / target, corpus)
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"fuzz_{target}.py"),
            f"-runs={runs}",
            "-max_total_time=60",
            "-timeout=5",
            "-rss_limit_mb=1024",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    done = re.search(r"Done (\d+) runs", output)
    assert done is not None, output[-4000:]
    assert int(done.group(1)) >= min(runs, 1000)
