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


def test_tasc_variants_name_their_settings_and_bad_ones_fail_before_any_engine():
    import pytest

    from benchmarks.run import main, tasc_variant

    assert tasc_variant("tasc") == ("tasc", {})
    assert tasc_variant("ngram") == ("ngram", {})
    assert tasc_variant("tasc@threshold=0.2+calibrate=0") == (
        "tasc", {"TASC_THRESHOLD": "0.2", "TASC_CALIBRATE": "0"})
    assert tasc_variant("tasc-self@step_overhead=6")[0] == "tasc-self"
    for bad, message in [("tasc@thresold=0.2", "unknown TASC setting"), ("tasc@threshold", "expected NAME=VALUE"),
                         ("ngram@threshold=0.2", "only tasc and tasc-self"), ("tasc@threshold=2", "threshold must be in"),
                         ("tasc@calibrate=x", "calibrate must be int")]:
        with pytest.raises(Exception, match=message):
            tasc_variant(bad)
    with pytest.raises(SystemExit):
        main(["--methods", "none,tasc@threshold=high"])
    with pytest.raises(SystemExit):
        main(["--methods", "none,magic"])


def test_ft_methods_are_checked_before_any_checkpoint_or_engine(capsys):
    import pytest

    from benchmarks.ft import main
    from benchmarks.report import _ft_spec

    for methods, message in [("tasc,oracle", "need none"), ("none,ngram", "need none and known methods"),
                             ("none,tasc@thresold=0.2", "unknown TASC setting"),
                             ("none,tasc@threshold=2", "threshold must be in")]:
        with pytest.raises(SystemExit):
            main(["--task", "bfcl", "--methods", methods])
        assert message in capsys.readouterr().err
    assert _ft_spec("tasc@threshold=0.2+calibrate=0") == "TASC-spec (threshold=0.2, calibrate=0)"
    assert _ft_spec("oracle") == "oracle"


def test_ft_plot_gives_each_variant_its_own_colour():
    from benchmarks.report import _FT_COLOR, _ft_colors

    colors = _ft_colors(["none", "tasc@threshold=0.2", "tasc", "tasc@calibrate=0", "oracle", "tasc@threshold=0.2"])
    assert {m: colors[m] for m in _FT_COLOR} == _FT_COLOR
    variant_colors = [colors["tasc@threshold=0.2"], colors["tasc@calibrate=0"]]
    assert len(set(variant_colors)) == 2 and not set(variant_colors) & set(_FT_COLOR.values())


def test_online_methods_take_tasc_variants_and_refuse_bad_ones_before_any_server(capsys):
    import pytest

    from benchmarks.online import main, methods_to_run

    assert methods_to_run(["tasc", "suffix"]) == ["none", "suffix", "tasc"]
    assert methods_to_run(["tasc@threshold=0.2", "tasc-static", "tasc@threshold=0.2"]) == [
        "none", "tasc-static", "tasc@threshold=0.2"]
    for methods, message in [("none,magic", "unknown method 'magic'"), ("none,tasc-self", "unknown method"),
                             ("none,tasc@thresold=0.2", "unknown TASC setting"),
                             ("none,tasc@threshold=2", "threshold must be in"),
                             ("none,suffix@threshold=0.2", "only tasc and tasc-self")]:
        with pytest.raises(SystemExit):
            main(["--methods", methods])
        assert message in capsys.readouterr().err, methods


def test_rescore_applies_the_current_scorer_to_stored_outputs(tmp_path):
    import json

    import pytest

    from benchmarks.rescore import rescore
    from tasc_vllm.tasks import get_task

    test = get_task("usaddress").load("test")[:2]
    runs = [{"method": "none", "batch_size": 1, "task_score": 0.0, "texts": [test[0].reference, "not json"]}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tasks": [{"task": "usaddress", "num_prompts": 2, "runs": runs}]}))
    assert rescore(path) == [("usaddress", "none", 1, 0.0, 0.5)]
    data = json.loads(path.read_text())
    assert data["tasks"][0]["runs"][0]["task_score"] == 0.5 and "rescored_unix" in data
    runs[0]["texts"] = ["only one"]
    path.write_text(json.dumps({"tasks": [{"task": "usaddress", "num_prompts": 2, "runs": runs}]}))
    with pytest.raises(SystemExit, match="1 outputs for 2 prompts"):
        rescore(path)
    # other result files (online, scaling) and broken ones are refused, and left as they were
    for text in ['{"kind": "online", "tasks": [{"task": "usaddress"}]}', '{"points": []}', "{not json"]:
        path.write_text(text)
        with pytest.raises(SystemExit, match="r.json: not a"):
            rescore(path)
        assert path.read_text() == text


def test_resume_keeps_finished_tasks_and_measures_only_the_rest(tmp_path, monkeypatch, capsys):
    """A long `benchmarks.run` cut short continues with --resume: finished tasks are kept as
    measured, the others run (each in one invocation), and a file made alike is required."""
    import json

    import pytest
    import transformers

    import benchmarks.report
    import tasc_vllm.models

    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(tasc_vllm.models, "materialize", lambda: tmp_path / "model")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(lambda path: object()))
    monkeypatch.setattr(benchmarks.report, "write_report", lambda: tmp_path / "RESULTS.md")
    measured = []

    def fake_bench_task(task_name, args, model, tokenizer, workdir, log, bar):
        measured.append(task_name)
        if task_name == "humaneval" and len(measured) == 2:
            raise KeyboardInterrupt  # the run is cut short in its last task
        bar.update(len(args.batches) * len(run.methods_order(args.methods)))
        return {"task": task_name, "num_prompts": 2, "runs": [{"method": "none", "batch_size": 1}]}

    monkeypatch.setattr(run, "bench_task", fake_bench_task)
    argv = ["--tasks", "bfcl,humaneval", "--batches", "1", "--methods", "none,tasc", "--name", "r"]
    path = tmp_path / "r.json"

    with pytest.raises(KeyboardInterrupt):
        run.main(argv)
    first = json.loads(path.read_text())
    assert [t["task"] for t in first["tasks"]] == ["bfcl"] and first["complete"] is False

    # other settings are refused before any model or engine, naming what differs
    with pytest.raises(SystemExit):
        run.main(argv[:3] + ["4"] + argv[4:] + ["--resume"])
    assert "batches: [1] there, [4] now" in capsys.readouterr().err
    assert measured == ["bfcl", "humaneval"]

    assert run.main(argv + ["--resume"]) == 0
    assert measured == ["bfcl", "humaneval", "humaneval"]  # bfcl kept, not measured again
    done = json.loads(path.read_text())
    assert [t["task"] for t in done["tasks"]] == ["bfcl", "humaneval"] and done["complete"] is True
    assert done["tasks"][0] == first["tasks"][0]
    assert [i["tasks"] for i in done["invocations"]] == [["bfcl"], ["humaneval"]]
    assert done["seconds"] >= first["seconds"]
    assert "resumed" in (tmp_path / "r-engines.log").read_text()
    assert "2 invocations" in report._resumed(done) and report._resumed(first) == ""

    assert run.main(argv + ["--resume"]) == 0  # finished: nothing measured, the file kept
    assert len(measured) == 3 and json.loads(path.read_text()) == done
    assert "nothing to resume" in capsys.readouterr().err

    path.write_text("{not json")
    with pytest.raises(SystemExit):
        run.main(argv + ["--resume"])
    assert "not a benchmarks.run result file" in capsys.readouterr().err
