"""scripts/candidate.sh refuses what it cannot do before any work (its stages are the project's own
CLIs, tested elsewhere; running them needs ../shared's evaluation sets)."""

import os
import subprocess

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "candidate.sh")


def _run(*args, **env):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **env))


def test_usage_without_arguments():
    r = _run()
    assert r.returncode == 2 and "WORKDIR OUT" in r.stderr


def test_refuses_an_existing_output_and_an_unknown_stage(tmp_path):
    r = _run(str(tmp_path / "run"), str(tmp_path))            # tmp_path exists
    assert r.returncode == 2 and "exists" in r.stderr
    r = _run(str(tmp_path / "run"), str(tmp_path / "new"), UPTO="everything")
    assert r.returncode == 2 and "UPTO=everything" in r.stderr
    assert not (tmp_path / "new").exists()
