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


def test_compare_tables_paired_standard_errors_tell_noise_from_change(tmp_path, capsys):
    import sys

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import compare_tables

    head = "dataset,scale,method,psnr_rgb,lpips_alex\n"
    (tmp_path / "old.csv").write_text(head + "S5,2.0,diffsr,30.00,0.1000\n")
    (tmp_path / "new.csv").write_text(head + "S5,2.0,diffsr,30.20,0.1010\n")
    img = "dataset,scale,image,method,psnr_rgb,lpips_alex\n"
    # PSNR: +0.2 / +0.2 / +0.1 dB (mean 0.167, SE 0.033, z = 5: a consistent change → counted);
    # LPIPS: +0.020 / −0.017 / 0.000 (mean +0.001, z ≈ 0.1: noise, though the mean got worse).
    (tmp_path / "old_per_image.csv").write_text(img + "S5,2.0,a,diffsr,30.0,0.100\nS5,2.0,b,diffsr,31.0,0.100\n"
                                                "S5,2.0,c,diffsr,29.0,0.100\n")
    (tmp_path / "new_per_image.csv").write_text(img + "S5,2.0,a,diffsr,30.2,0.120\nS5,2.0,b,diffsr,31.2,0.083\n"
                                                "S5,2.0,c,diffsr,29.1,0.100\n")
    assert compare_tables.main([str(tmp_path / "old.csv"), str(tmp_path / "new.csv"), "--paired"]) == 0
    out = capsys.readouterr().out
    assert "3 images" in out
    mean, se, n = compare_tables.paired_difference(
        compare_tables.read_per_image(str(tmp_path / "old_per_image.csv"))[("diffsr", 2.0, "S5")],
        compare_tables.read_per_image(str(tmp_path / "new_per_image.csv"))[("diffsr", 2.0, "S5")], "psnr_rgb")
    assert n == 3 and abs(mean - 0.5 / 3) < 1e-9 and se > 0
    assert "psnr_rgb: better in 1, equal in 0, worse in 0 of 1; measurably (|z| ≥ 2) better in 1, worse in 0" in out
    assert "lpips_alex: better in 0, equal in 0, worse in 1 of 1; measurably (|z| ≥ 2) better in 0, worse in 0" in out
    (tmp_path / "new_per_image.csv").unlink()
    assert compare_tables.main([str(tmp_path / "old.csv"), str(tmp_path / "new.csv"), "--paired"]) == 2


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


def test_the_bundled_table_stores_the_grid_candidates_are_swept_on():
    # scripts/candidate.sh reads calibration.t_grid to sweep a candidate where the bundled model was
    # swept, so the stored grid must be the one each mode's stored measurements were taken on.
    import json

    with open(os.path.join(REPO, "diffsr_jax", "assets", "default_model", "prf.json")) as f:
        table = json.load(f)
    for mode in (table, table["modes"]["consistent"]):
        grid = mode["calibration"]["t_grid"]
        assert grid[0] == 0.0 and grid == sorted(grid) and len(grid) > 2
        assert [round(fraction * table["T"]) for fraction in grid] == mode["metrics_t"]
