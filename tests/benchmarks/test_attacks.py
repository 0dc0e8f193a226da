"""The attack script runs as its docstring says: a row per attack, the tally, results.json."""

import json

from tests.benchmarks.scripts import run_script


def test_chosen_attacks_run_and_hold(tmp_path):
    out = tmp_path / "results.json"
    chosen = ["14-sigma-zero", "6-fifo-spec", "2-export-onto-spec"]
    done = run_script("attacks", "run", "--only", *chosen, "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 of 3 attacks held" in done.stdout
    result = json.loads(out.read_text())
    assert sorted(row["id"] for row in result["attacks"]) == sorted(chosen)  # in the script's order
    assert all(row["held"] for row in result["attacks"]) and (result["held"], result["total"]) == (3, 3)
