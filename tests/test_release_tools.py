"""Release tools: scripts/candidate.sh refuses what it cannot do before any work (its stages are the
project's own CLIs, tested elsewhere; running them needs ../shared), and benchmarks/compare_tables.py."""

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


def test_compare_tables_counts_better_equal_worse(tmp_path, capsys):
    import sys

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import compare_tables

    head = "dataset,scale,method,psnr_rgb,lpips_alex\n"
    (tmp_path / "old.csv").write_text(head + "S5,2.0,diffsr,30.00,0.1000\nS5,4.0,diffsr,24.00,0.3000\n"
                                      "S5,4.0,lanczos,23.00,0.4000\n")
    (tmp_path / "new.csv").write_text(head + "S5,2.0,diffsr,30.20,0.1010\nS5,4.0,diffsr,23.999,0.2900\n")
    assert compare_tables.main([str(tmp_path / "old.csv"), str(tmp_path / "new.csv")]) == 0
    out = capsys.readouterr().out
    assert "psnr_rgb: better in 1, equal in 1, worse in 0 of 2" in out       # 24.00 vs 23.999: equal at 2 dp
    assert "lpips_alex: better in 1, equal in 0, worse in 1 of 2" in out     # lower is better
    assert "lanczos" not in out                                              # only rows in both files
    assert compare_tables.main([str(tmp_path / "old.csv"), str(tmp_path / "new.csv"),
                                "--methods", "bicubic"]) == 2


def test_readme_table_matches_the_shipped_table1_and_noise_table():
    """The README's results rows are exactly what scripts/readme_table.py derives from the shipped
    benchmarks/results/table1.csv and the bundled prf.json (a release that forgets one fails)."""
    import sys

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import readme_table

    rows = readme_table.rows(os.path.join(REPO, "benchmarks", "results", "table1.csv"),
                             os.path.join(REPO, "diffsr_jax", "assets", "default_model", "prf.json"))
    assert len(rows) == 15  # 3 scales x (bicubic, lanczos, fsrcnn, plain, default)
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    missing = [r for r in rows if r not in readme]
    assert not missing, "README.md's results table is out of step with table1.csv/prf.json:\n" + "\n".join(missing)
