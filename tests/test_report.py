"""The committed benchmark report is what its committed results generate, plots included."""

import re
import shutil
from pathlib import Path

import benchmarks.report as report
import benchmarks.run as run

REPO = Path(__file__).resolve().parents[1]


def test_committed_report_is_generated_from_the_committed_results(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    committed = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert committed, "no benchmark results are committed"
    for path in committed:
        shutil.copy(path, results)
    monkeypatch.setattr(report, "HERE", tmp_path)
    monkeypatch.setattr(report, "RESULTS", results)
    monkeypatch.setattr(run, "RESULTS", results)  # the online and offline plots write there

    text = report.write_report().read_text()

    assert text == (REPO / "benchmarks" / "RESULTS.md").read_text(), \
        "benchmarks/RESULTS.md is stale: run python -m benchmarks.report and commit it"
    images = re.findall(r"!\[[^\]]*\]\(results/([^)]+)\)", text)
    assert images
    for png in images:
        assert (REPO / "benchmarks" / "results" / png).exists(), f"{png} is linked but not committed"
    drawn = sorted(results.glob("*.png"))  # the plots the report draws itself (scaling.png comes with its run)
    assert len(drawn) >= len(images) - 1
    assert all(png.stat().st_size > 10_000 for png in drawn)
    for path in committed:  # every result file has its section
        if path.name.startswith("replay-greedy-"):
            continue  # recorded outputs that benchmarks.replay drafts over: its input, not a result
        assert path.name in text or path.stem in text, path.name
