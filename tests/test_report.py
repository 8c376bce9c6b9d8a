"""The committed benchmark report is what its committed results generate, plots included."""

import json
import re
import shutil
from pathlib import Path

import pytest

import benchmarks.report as report
import benchmarks.run as run
from benchmarks.harness.methods import keeps_state, methods_order
from benchmarks.sections.common import resumed, spread

REPO = Path(__file__).resolve().parents[1]


def test_committed_report_is_generated_from_the_committed_results(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    committed = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert committed, "no benchmark results are committed"
    for path in committed:
        shutil.copy(path, results)
    monkeypatch.setattr(report, "HERE", tmp_path)
    monkeypatch.setattr(report, "RESULTS", results)  # the sections draw their plots there

    text = report.write_report().read_text()

    assert text == (REPO / "benchmarks" / "RESULTS.md").read_text(), \
        "benchmarks/RESULTS.md is stale: run python -m benchmarks.report and commit it"
    images = re.findall(r"!\[[^\]]*\]\(results/([^)]+)\)", text)
    assert images
    for png in images:
        assert (REPO / "benchmarks" / "results" / png).exists(), f"{png} is linked but not committed"
    drawn = sorted(results.glob("*.png"))  # the plots the report draws itself
    assert len(drawn) >= len(images) - 1
    assert all(png.stat().st_size > 10_000 for png in drawn)
    for path in committed:  # every result file has its section
        if path.name.startswith("replay-greedy-"):
            continue  # recorded outputs that benchmarks.replay drafts over: its input, not a result
        assert path.name in text or path.stem in text, path.name
    # the canonical files have their sections; the others are listed, not rendered
    for name in report.CANONICAL_FILES:
        assert (REPO / "benchmarks" / "results" / name).exists(), f"{name} is not committed"
        assert re.search(rf"^## .*`{re.escape(name)}`", text, re.M), name
    others = report.other_files(results)
    assert set(others).isdisjoint(report.CANONICAL_FILES)
    for name in others:
        assert f"- `{name}`" in text and not re.search(rf"^## .*`{re.escape(name)}`", text, re.M), name


def test_tasc_variants_name_their_settings_and_bad_ones_fail_before_any_engine():
    import pytest

    from benchmarks.harness.methods import tasc_variant
    from benchmarks.run import main

    assert tasc_variant("tasc") == ("tasc", {})
    assert tasc_variant("ngram") == ("ngram", {})
    assert tasc_variant("tasc@threshold=0.2+calibrate=0") == ("tasc", {"threshold": 0.2, "calibrate": 0})
    assert tasc_variant("tasc-self@step_overhead=6")[0] == "tasc-self"
    # values are JSON where they parse, else text; a string setting keeps its text
    assert tasc_variant("tasc@stop_rule=first+stats_path=2024") == ("tasc", {"stop_rule": "first", "stats_path": "2024"})
    for bad, message in [("tasc@thresold=0.2", "unknown TASC setting"), ("tasc@threshold", "expected NAME=VALUE"),
                         ("ngram@threshold=0.2", "only tasc and tasc-self"), ("tasc@threshold=2", "threshold must be in"),
                         ("tasc@calibrate=x", "'calibrate' must be int")]:
        with pytest.raises(Exception, match=message):
            tasc_variant(bad)
    with pytest.raises(SystemExit):
        main(["--methods", "none,tasc@threshold=high"])
    with pytest.raises(SystemExit):
        main(["--methods", "none,magic"])


def test_ft_methods_are_checked_before_any_checkpoint_or_engine(capsys):
    import pytest

    from benchmarks.ft import main
    from benchmarks.sections.ft import ft_spec

    for methods, message in [("tasc,oracle", "need none"), ("none,ngram", "need none and known methods"),
                             ("none,tasc@thresold=0.2", "unknown TASC setting"),
                             ("none,tasc@threshold=2", "threshold must be in")]:
        with pytest.raises(SystemExit):
            main(["--task", "bfcl", "--methods", methods])
        assert message in capsys.readouterr().err
    assert ft_spec("tasc@threshold=0.2+calibrate=0") == "TASC-spec (threshold=0.2, calibrate=0)"
    assert ft_spec("oracle") == "oracle"


def test_ft_names_its_result_by_base_model_and_refuses_a_base_model_beside_given_checkpoints(capsys):
    import pytest

    from benchmarks.ft import default_name, main

    assert default_name("bfcl", None) == "ft-bfcl"
    assert default_name("bfcl", "gemma-3-270m") == "ft-bfcl-gemma-3-270m"
    assert default_name("usaddress", "/models/my-slm/") == "ft-usaddress-my-slm"
    with pytest.raises(SystemExit):
        main(["--task", "bfcl", "--base-model", "gemma-3-270m", "--enriched", "/a", "--baseline", "/b"])
    assert "--base-model names the model to build from" in capsys.readouterr().err


def test_ft_section_names_the_base_model(tmp_path):
    from benchmarks.sections.ft import section

    q = {"vocab_size": 262144, "tokens_added": 0, "training_steps": 300, "task_score": 0.5, "scores": [1, 0],
         "output_tokens_per_answer": 40.0, "output_chars_per_answer": 90.0, "reference_tokens_per_answer": 41.0,
         "num_prompts": 2, "enrich_settings": {}}
    run = {"model": "baseline-ft", "method": "none", "requests_per_second": 1.0, "speedup_requests": 1.0,
           "speedup_chars": 1.0, "task_score": 0.5, "num_requests": 2}
    res = {"name": "ft-bfcl-gemma-3-270m", "task": "bfcl", "machine": {}, "seconds": 60,
           "settings": {"dtype": "bfloat16", "k": 8, "base_model": "gemma-3-270m"},
           "fine_tunes": {"baseline-ft": q, "tasc-ft": q | {"tokens_added": 64}}, "speed": [run], "ceilings": {}}
    head = section("ft-bfcl-gemma-3-270m.json", res, tmp_path)[0]
    assert head.startswith("## TASC-ft on bfcl, gemma-3-270m")
    assert "--base-model gemma-3-270m`" in head
    res["settings"].pop("base_model")  # a file from before the option: the default model
    assert section("ft-bfcl.json", res, tmp_path)[0].startswith("## TASC-ft on bfcl (")


def test_ft_plot_gives_each_variant_its_own_colour():
    from benchmarks.sections.ft import FT_COLOR, ft_colors

    colors = ft_colors(["none", "tasc@threshold=0.2", "tasc", "tasc@calibrate=0", "oracle", "tasc@threshold=0.2"])
    assert {m: colors[m] for m in FT_COLOR} == FT_COLOR
    variant_colors = [colors["tasc@threshold=0.2"], colors["tasc@calibrate=0"]]
    assert len(set(variant_colors)) == 2 and not set(variant_colors) & set(FT_COLOR.values())


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
    from tasc_vllm.eval.tasks import get_task

    test = get_task("usaddress").load("test")[:2]
    runs = [{"method": "none", "batch_size": 1, "task_score": 0.0, "texts": [test[0].reference, "not json"]}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tasks": [{"task": "usaddress", "num_prompts": 2, "runs": runs}]}))
    assert rescore(path) == [("usaddress", "none", 1, 0.0, 0.5)]
    data = json.loads(path.read_text())
    assert data["tasks"][0]["runs"][0]["task_score"] == 0.5 and "rescored_unix" in data
    assert data["tasks"][0]["runs"][0]["scores"] == [1.0, 0.0]  # per prompt, for paired comparisons
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
    import tasc_vllm.eval.models

    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(tasc_vllm.eval.models, "materialize", lambda: tmp_path / "model")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(lambda path: object()))
    monkeypatch.setattr(benchmarks.report, "write_report", lambda: tmp_path / "RESULTS.md")
    measured = []

    def fake_bench_task(task_name, args, workdir, log, bar, kind=None):
        measured.append(task_name)
        if task_name == "humaneval" and len(measured) == 2:
            raise KeyboardInterrupt  # the run is cut short in its last task
        bar.update(len(args.batches) * len(methods_order(args.methods)))
        return {"task": task_name, "model": kind, "num_prompts": 2, "runs": [{"method": "none", "batch_size": 1}]}

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
    assert "2 invocations" in resumed(done) and resumed(first) == ""
    assert "cores" not in resumed(done)  # one machine: named once, in the section's first line
    moved = json.loads(json.dumps(done))  # the second invocation on another machine
    moved["invocations"][1]["machine"] = {"cores": 64, "cpu": "another CPU"}
    assert "bfcl on " in resumed(moved) and "humaneval on " in resumed(moved)
    assert resumed(moved).count(" cores, ") == 2 and "UTC (64 cores, another CPU)" in resumed(moved)
    assert "not across tasks measured on different machines" in resumed(moved)

    assert run.main(argv + ["--resume"]) == 0  # finished: nothing measured, the file kept
    assert len(measured) == 3 and json.loads(path.read_text()) == done
    assert "nothing to resume" in capsys.readouterr().err

    path.write_text("{not json")
    with pytest.raises(SystemExit):
        run.main(argv + ["--resume"])
    assert "not a benchmarks.run result file" in capsys.readouterr().err


def test_repeats_alternate_the_order_and_each_ratio_compares_runs_of_one_repeat(tmp_path, monkeypatch,
                                                                               default_model_dir):
    """``--repeats 3``: every method runs three times, the order reversed on every other
    repeat; speed-ups divide by the same repeat's plain run; the report gives median and range."""
    from types import SimpleNamespace

    calls = []
    speed = {"none": [10.0, 5.0, 10.0], "tasc": [20.0, 15.0, 30.0], "oracle": [40.0, 40.0, 40.0]}

    def fake_run_method(method, common, task_ctx, log):
        rep = sum(m == method for m in calls)
        calls.append(method)
        if method == "oracle":
            assert Path(task_ctx["oracle"]).exists()  # written from the first plain run
        v = speed[method][rep]
        return [{"batch_size": b, "method": method, "requests_per_second": v, "chars_per_second": v,
                 "tokens_per_second": v, "num_requests": 2, "texts": ["a", "b"], "token_ids": [[1], [2]],
                 "spec_metrics": {}} for b in common["batch_sizes"]]

    monkeypatch.setattr(run, "run_method", fake_run_method)
    args = SimpleNamespace(methods=["none", "tasc", "oracle"], batches=[16], prompts=2, train_examples=2,
                           model="default", base_model=None, k=4, dtype="bfloat16", compiled=False,
                           repeats=3)
    bar = SimpleNamespace(set_description=lambda d: None, update=lambda n: None)
    monkeypatch.setattr(run, "served_model", lambda task, kind, base: str(default_model_dir))
    res = run.bench_task("usaddress", args, tmp_path, tmp_path / "log", bar)

    assert calls == ["none", "tasc", "oracle", "oracle", "tasc", "none", "none", "tasc", "oracle"]
    tasc = [r for r in res["runs"] if r["method"] == "tasc"]
    assert [r["repeat"] for r in tasc] == [0, 1, 2]
    assert [r["speedup_requests"] for r in tasc] == [2.0, 3.0, 3.0]  # 20/10, 15/5, 30/10
    assert spread([r["speedup_requests"] for r in tasc]) == "3.00 (2.00 to 3.00)"
    assert spread([1.5]) == "1.50" and spread([None]) == "-"


def test_methods_that_learn_from_what_they_serve_get_a_fresh_engine_per_batch_size(tmp_path, monkeypatch,
                                                                                   default_model_dir):
    """Every batch size serves the same prompts: TASC-spec (online learning, calibration) and
    suffix decoding would otherwise draft at batch 16 the answers they learned at batch 1."""
    from types import SimpleNamespace

    engines = []

    def fake_run_method(method, common, task_ctx, log):
        engines.append((method, common["batch_sizes"]))
        return [{"batch_size": b, "method": method, "requests_per_second": 1.0, "chars_per_second": 1.0,
                 "tokens_per_second": 1.0, "num_requests": 2, "texts": ["a", "b"], "token_ids": [[1], [2]],
                 "spec_metrics": {}} for b in common["batch_sizes"]]

    monkeypatch.setattr(run, "run_method", fake_run_method)
    methods = ["none", "ngram", "suffix-cold", "tasc", "tasc@threshold=0.2", "oracle"]
    args = SimpleNamespace(methods=methods, batches=[1, 16], prompts=2, train_examples=2, model="default",
                           base_model=None, k=4,
                           dtype="bfloat16", compiled=False, repeats=1)
    bar = SimpleNamespace(set_description=lambda d: None, update=lambda n: None)
    monkeypatch.setattr(run, "served_model", lambda task, kind, base: str(default_model_dir))
    res = run.bench_task("usaddress", args, tmp_path, tmp_path / "log", bar)
    assert engines == [("none", [1, 16]), ("ngram", [1, 16]), ("suffix-cold", [1]), ("suffix-cold", [16]),
                       ("tasc", [1]), ("tasc", [16]), ("tasc@threshold=0.2", [1]), ("tasc@threshold=0.2", [16]),
                       ("oracle", [1, 16])]
    assert len(res["runs"]) == 2 * len(methods)
    assert keeps_state("tasc-self") and not keeps_state("oracle")


def test_repeats_must_be_positive_and_old_files_resume_as_one_repeat(tmp_path, monkeypatch, capsys):
    import json

    import pytest

    with pytest.raises(SystemExit):
        run.main(["--repeats", "0", "--name", "r"])
    assert "--repeats must be at least 1" in capsys.readouterr().err
    settings = {"tasks": ["bfcl"], "batches": [1], "methods": ["none"], "repeats": 1}
    older = {"settings": {k: v for k, v in settings.items() if k != "repeats"}, "tasks": []}
    (tmp_path / "old.json").write_text(json.dumps(older))
    assert run.load_unfinished(tmp_path / "old.json", settings) is not None
    with pytest.raises(ValueError, match="repeats: 1 there, 2 now"):
        run.load_unfinished(tmp_path / "old.json", {**settings, "repeats": 2})


def test_a_finished_run_resumes_to_measure_tasks_added_to_it_and_never_drops_one(tmp_path):
    import json

    import pytest

    settings = {"tasks": ["usaddress"], "batches": [1], "methods": ["none"], "repeats": 1}
    done = {"settings": settings, "tasks": [{"task": "usaddress", "runs": []}], "complete": True}
    (tmp_path / "g.json").write_text(json.dumps(done))
    assert run.load_unfinished(tmp_path / "g.json", settings)["complete"]
    grown = run.load_unfinished(tmp_path / "g.json", {**settings, "tasks": ["usaddress", "bfcl"]})
    assert not grown["complete"] and grown["settings"]["tasks"] == ["usaddress", "bfcl"]
    assert [t["task"] for t in grown["tasks"]] == ["usaddress"]
    with pytest.raises(ValueError, match=r"holds tasks \['usaddress'\] outside --tasks"):
        run.load_unfinished(tmp_path / "g.json", {**settings, "tasks": ["bfcl"]})


def test_tasc_settings_reach_the_engine_in_additional_config(tmp_path, monkeypatch):
    """`benchmarks.run` passes a variant's settings, the index and the stats file in the runner
    spec's "tasc" (vLLM's additional_config["tasc"]) and records the settings in effect; the
    oracle keeps its file in the environment."""
    import tasc_vllm.eval.runner

    specs = []

    def fake_run_in_subprocess(spec, log_path=None):
        specs.append(spec)
        return {"runs": [{"batch_size": b} for b in spec["batch_sizes"]]}

    monkeypatch.setattr(tasc_vllm.eval.runner, "run_in_subprocess", fake_run_in_subprocess)
    monkeypatch.delenv("TASC_THRESHOLD", raising=False)
    ctx = {"dir": str(tmp_path), "index": "/x.tasc", "self_index": "/self.tasc", "oracle": "/o.json"}
    (got,) = run.run_method("tasc@threshold=0.2+calibrate=0", {"batch_sizes": [1]}, ctx, tmp_path / "log")
    stats = str(tmp_path / "tasc-stats-tasc@threshold=0.2+calibrate=0.json")
    assert specs[-1]["method"] == "tasc" and "env" not in specs[-1]
    assert specs[-1]["tasc"] == {"threshold": 0.2, "calibrate": 0, "index": "/x.tasc", "stats_path": stats}
    assert got["tasc_settings"]["threshold"] == 0.2 and got["tasc_settings"]["calibrate"] == 0
    assert got["tasc_settings"]["index"] == "/x.tasc" and got["method"] == "tasc@threshold=0.2+calibrate=0"
    run.run_method("tasc-self", {"batch_sizes": [1]}, ctx, tmp_path / "log")
    assert specs[-1]["tasc"]["index"] == "/self.tasc"
    run.run_method("oracle", {"batch_sizes": [1]}, ctx, tmp_path / "log")
    assert specs[-1]["env"] == {"TASC_ORACLE_FILE": "/o.json"} and "tasc" not in specs[-1]


def test_online_servers_get_tasc_settings_as_additional_config():
    from pathlib import Path

    from benchmarks.online import server_config

    spec, extra = server_config("tasc-static", 8, Path("/x.tasc"))
    assert spec["model"] == "tasc_vllm.TascProposer" and spec["num_speculative_tokens"] == 8
    assert extra == {"tasc": {"learn_entries": 0, "index": "/x.tasc"}}
    assert server_config("tasc@threshold=0.2", 8, Path("/x.tasc"))[1] == {"tasc": {"threshold": 0.2, "index": "/x.tasc"}}
    assert server_config("ngram", 8, Path("/x.tasc"))[1] is None
    assert server_config("none", 8, Path("/x.tasc")) == (None, None)


def test_several_models_are_compared_with_the_first_models_plain_run(tmp_path, monkeypatch, default_model_dir):
    """--model fine-tuned,tasc-ft: each tuned task serves both models in one invocation, every
    run is also compared with the first model's plain run, and RESULTS.md gets the whole-system
    table, with each later model's task score against the first's prompt by prompt; HumanEval
    serves the default model alone."""
    from benchmarks.sections import offline
    from tasc_vllm.eval.tasks import get_task

    speed = {("fine-tuned", "none"): 10.0, ("fine-tuned", "tasc"): 25.0, ("tasc-ft", "none"): 20.0,
             ("tasc-ft", "tasc"): 40.0, ("default", "none"): 5.0, ("default", "tasc"): 10.0}
    served = []

    def fake_served_model(task, kind, base):
        served.append((task, kind))
        bases.append(base)
        return str(default_model_dir)

    bases = []

    right = get_task("usaddress").load("test")[0].reference

    def fake_run_method(method, common, task_ctx, log):
        kind = served[-1][1]
        v = speed[kind, method]
        return [{"batch_size": b, "method": method, "requests_per_second": v, "chars_per_second": v,
                 "tokens_per_second": v, "num_requests": 2, "output_tokens": 30 if kind == "tasc-ft" else 60,
                 "texts": [right if kind == "tasc-ft" else "a", "b"], "token_ids": [[1], [2]], "spec_metrics": {}}
                for b in common["batch_sizes"]]

    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(run, "served_model", fake_served_model)
    monkeypatch.setattr(run, "run_method", fake_run_method)
    monkeypatch.setattr(report, "write_report", lambda: tmp_path / "RESULTS.md")
    assert run.main(["--tasks", "usaddress,humaneval", "--batches", "1", "--methods", "none,tasc", "--prompts", "2",
                     "--train-examples", "2", "--model", "fine-tuned,tasc-ft", "--name", "s"]) == 0
    assert served == [("usaddress", "fine-tuned"), ("usaddress", "tasc-ft"), ("humaneval", "default")]
    res = json.loads((tmp_path / "s.json").read_text())
    assert [(t["task"], t["model"]) for t in res["tasks"]] == [("usaddress", "fine-tuned"), ("usaddress", "tasc-ft"),
                                                               ("humaneval", "default")]
    ft, tft = res["tasks"][0]["runs"], res["tasks"][1]["runs"]
    assert [r["speedup_vs_first_model"] for r in ft] == [1.0, 2.5]
    assert [r["speedup_vs_first_model"] for r in tft] == [2.0, 4.0]  # TASC-ft's plain run against the fine-tune's
    assert [r["speedup_requests"] for r in tft] == [1.0, 2.0]  # and against its own
    lines = offline.section("s.json", res, tmp_path)
    text = "\n".join(lines)
    assert "usaddress: the whole system" in text and "| 1 | tasc-ft | tasc | 4.00 |" in text
    assert [r["scores"] for r in tft] == [[1.0, 0.0], [1.0, 0.0]]
    assert ("Task score, tasc-ft against fine-tuned (plain runs, batch 1), prompt by prompt: +50.0 points on 2 "
            "prompts (1 won, 0 lost; sign test p = 1.00; 95 % interval") in text
    assert "### humaneval, the default model as it ships, too few examples to tune on" in text
    with pytest.raises(SystemExit):
        run.main(["--model", "fine-tuned,best"])

    # another base model: its fine-tunes are served, and the report names it
    served.clear()
    assert run.main(["--tasks", "usaddress", "--batches", "1", "--methods", "none,tasc", "--prompts", "2",
                     "--train-examples", "2", "--model", "fine-tuned,tasc-ft", "--base-model", "Gemma-3-270M",
                     "--name", "g"]) == 0
    assert bases[-2:] == ["gemma-3-270m", "gemma-3-270m"]
    res = json.loads((tmp_path / "g.json").read_text())
    assert {t["base_model"] for t in res["tasks"]} == {"gemma-3-270m"}
    text = "\n".join(offline.section("g.json", res, tmp_path))
    assert "### usaddress, gemma-3-270m: the whole system" in text
    assert "### usaddress, gemma-3-270m fine-tuned for the task (--no-enrich)" in text
    assert (tmp_path / "g-usaddress-gemma-3-270m-fine-tuned.png").exists()
    with pytest.raises(SystemExit):
        run.main(["--base-model", str(tmp_path / "no-such-folder"), "--name", "never"])


def test_suffix_methods_without_arctic_inference_fail_before_any_engine(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "arctic_inference" else real(name, *a))
    with pytest.raises(SystemExit):
        run.main(["--methods", "none,suffix-warm", "--name", "never"])
    assert "need arctic-inference" in capsys.readouterr().err


def test_online_serves_the_named_model_kind_and_refuses_others(capsys):
    """``benchmarks.online --model`` takes the benchmarks' model kinds; a task without a
    fine-tune serves the default model whatever is named."""
    import pytest

    from benchmarks.harness.served_models import served_kinds
    from benchmarks.online import main

    with pytest.raises(SystemExit):
        main(["--model", "tuned"])
    assert "invalid choice: 'tuned'" in capsys.readouterr().err
    assert served_kinds("usaddress", "tasc-ft") == ["tasc-ft"]
    assert served_kinds("humaneval", "fine-tuned") == ["default"]
