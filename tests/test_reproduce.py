"""train.reproduce: the experiment plan behind the README's results table (configs only; the
training itself is tested in test_train_ulmfit)."""

import dataclasses

import pytest

from train import reproduce


def experiment_script(name: str):
    """scripts/experiments/<name>.py imported as a module (the folder is not a package)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def plan(monkeypatch, tmp_path):
    """`size` -> [(name, config)], with IMDb's location faked: building configs reads no data."""
    monkeypatch.setattr(reproduce, "imdb_path", lambda workdir: "/data/aclImdb")
    return lambda size="small": reproduce.experiments(tmp_path, size)


def test_every_stage_starts_from_an_earlier_one(plan, tmp_path):
    stages = plan()
    names = [name for name, _ in stages]
    assert len(names) == len(set(names)) == 6 + 4 * 4  # 3 LMs x 2 directions, 4 variants x 4 tasks
    seen = set()
    for name, config in stages:
        init = config.init.workdir
        if name.endswith("_scratch") or name.startswith("pretrain"):
            assert init == "", name
        else:
            assert init.startswith(str(tmp_path)), name
            assert init.rsplit("/", 1)[1] in seen, f"{name} starts from a later stage {init}"
        assert config.backward == name.endswith("_bwd"), name
        seen.add(name)
    by_name = dict(stages)
    assert by_name["imdb1k_nolmft"].init.workdir.endswith("/pretrain")
    assert by_name["imdb1k_ulmfit"].init.workdir.endswith("/lm_imdb")
    assert by_name["trec_ulmfit_bwd"].init.workdir.endswith("/lm_trec_bwd")


def test_scratch_gets_as_many_epochs_as_gradual_unfreezing(plan):
    by_name = dict(plan())
    for task in reproduce.TASKS:
        phases = by_name[f"{task}_ulmfit"].phases
        scratch = by_name[f"{task}_scratch"].phases
        assert len(scratch) == 1 and scratch[0][0] == 0  # one phase, all groups
        assert scratch[0][1] == sum(epochs for _, epochs, _ in phases), task


def test_sizes_set_model_and_data(plan):
    small, full = dict(plan("small")), dict(plan("full"))
    assert (small["pretrain"].model.emb_sz, small["pretrain"].model.n_hid) == (128, 384)
    assert small["imdb25k_ulmfit"].train.max_tokens == 128
    assert small["lm_imdb"].data.train_limit == 6000
    # fastai's AWD-LSTM and data: 400/1152/3, 60k vocabulary, bptt 72, whole reviews, all data.
    model = full["pretrain"].model
    assert (model.emb_sz, model.n_hid, model.n_layers) == (400, 1152, 3)
    assert full["pretrain"].vocab.max_vocab == 60000
    assert full["pretrain"].train.bptt == full["imdb25k_ulmfit"].model.bptt == 72
    assert full["imdb25k_ulmfit"].model.max_len == 72 * 20
    assert full["imdb25k_ulmfit"].train.max_tokens == 0
    assert full["imdb25k_ulmfit"].data.test_limit == 0
    assert full["lm_imdb"].data.train_limit == 0


def test_a_workdir_keeps_the_size_it_started_with(tmp_path):
    reproduce.claim_size(tmp_path, "small")
    reproduce.claim_size(tmp_path, "small")  # a rerun of the same size continues
    with pytest.raises(ValueError, match="holds 'small'-size experiments"):
        reproduce.run_all(tmp_path, size="full")
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        reproduce.claim_size(tmp_path / "other", "huge")


def test_report_shows_finished_cells_and_marks_the_rest():
    results = {
        "trec_scratch": {"accuracy": 0.836},
        "trec_tfidf": {"accuracy": 0.9},
        "imdb100_ensemble": {"accuracy": 0.583},
        "pretrain": {"perplexity": 80.04, "seconds": 4620.0},
    }
    table = reproduce.report(results)
    assert "| TREC-6 | 10.0% | 16.4% | … | … | … | … |" in table
    assert "| IMDb, 100 labels | … | … | … | … | … | 41.7% |" in table
    assert "| pretrain | 80.0 | 77 |" in table
    assert "pretrain_bwd" not in table


def test_report_fills_a_cell_being_run_again_from_lost_json_and_marks_it():
    results = {
        "imdb1k_ulmfit": {"accuracy": 0.75},
        "pretrain": {"perplexity": 80.04, "seconds": 60},
    }
    earlier = {
        "imdb1k_ulmfit": {"accuracy": 0.70},  # superseded by the re-run
        "imdb1k_ulmfit_s1": {"accuracy": 0.80},  # still being run again
        "lm_imdb": {"perplexity": 78.4, "seconds": 4560.0},
        "pretrain": {"perplexity": 80.06, "seconds": 3563.0},
    }
    table = reproduce.report(results, earlier)
    assert "| IMDb, 1k labels | … | … | … | 22.5% ± 3.5 (2)† | … | … |" in table
    assert "| pretrain | 80.0 | 1 |" in table and "| lm_imdb† | 78.4 | 76 |" in table
    assert "† includes results of stages whose models were lost" in table
    assert "†" not in reproduce.report(results)


def test_tfidf_baseline_chooses_c_on_validation():
    pytest.importorskip("sklearn")
    from ulmfit_jax.stages.baselines import tfidf_logistic

    pos, neg = ["good film", "great fun", "fine acting"], ["bad film", "dull plot", "poor acting"]
    result = tfidf_logistic(
        pos + neg,
        [1, 1, 1, 0, 0, 0],
        ["good fun", "dull film"],
        [1, 0],
        ["great acting", "poor plot"],
        [1, 0],
        c_grid=(0.01, 10.0),
    )
    assert set(result["by_C"]) == {0.01, 10.0} and result["C"] in result["by_C"]
    assert result["valid_accuracy"] == max(result["by_C"].values())
    assert result["test_accuracy"] == 1.0


def test_whole_size_reads_whole_reviews_and_runs_three_seeds_of_the_small_cells(plan):
    whole = dict(plan("whole"))
    assert whole["imdb1k_ulmfit"].train.max_tokens == 0  # BPT3C over the whole review
    assert whole["imdb1k_ulmfit"].model.max_len == 64 * 20
    assert whole["lm_imdb"].data.train_limit == 0  # all 25,000 + 50,000 reviews
    for task in ("imdb100", "imdb1k"):
        seeds = [whole[reproduce.cell(task, "ulmfit", s)].seed for s in range(3)]
        assert seeds == [0, 1, 2]
        assert reproduce.cell(task, "ulmfit", 3) not in whole
    assert "imdb25k_ulmfit_s1" not in whole and "trec_scratch_s1" not in whole


def test_whole_size_measures_what_whole_reviews_buy(plan):
    by_name = dict(plan("whole"))
    first128, whole = by_name["imdb1k_ulmfit_first128"], by_name["imdb1k_ulmfit"]
    assert (first128.train.max_tokens, whole.train.max_tokens) == (128, 0)
    assert first128.init.workdir == whole.init.workdir and first128.seed == whole.seed == 0
    assert "imdb1k_ulmfit_first128" not in dict(plan("small"))  # reads 128 tokens anyway
    results = {"imdb1k_ulmfit": {"accuracy": 0.8}, "imdb1k_ulmfit_first128": {"accuracy": 0.75}}
    assert "| first 128 tokens | 25.0% |" in reproduce.report(results)


def test_seeds_of_a_cell_share_seed_zeros_lr_find():
    assert reproduce.lr_find_name("imdb100_ulmfit") == "imdb100_ulmfit_lrfind"
    assert reproduce.lr_find_name("imdb100_ulmfit_s2") == "imdb100_ulmfit_lrfind"
    assert reproduce.lr_find_name("imdb1k_ulmfit_bwd_s1") == "imdb1k_ulmfit_bwd_lrfind"
    assert reproduce.lr_find_name("lm_imdb") == "lm_imdb_lrfind"
    assert reproduce.lr_find_name("pretrain_bwd") is None


def test_lr_find_is_chosen_per_kind_of_stage():
    whole, valley = reproduce.SIZES["whole"], reproduce.SIZES["whole_valley"]
    assert not reproduce.uses_lr_find(whole, "lm_imdb")
    assert not reproduce.uses_lr_find(whole, "imdb1k_ulmfit_s1")
    assert reproduce.uses_lr_find(valley, "lm_trec_bwd")
    assert reproduce.uses_lr_find(valley, "imdb1k_ulmfit_s1")
    assert not reproduce.uses_lr_find(valley, "pretrain")
    only_lm = dataclasses.replace(whole, lm_lr_find=True)
    assert reproduce.uses_lr_find(only_lm, "lm_imdb")
    assert not reproduce.uses_lr_find(only_lm, "trec_scratch")


def test_found_rates_keep_the_recipes_ratios(plan):
    config = dict(plan())["imdb1k_ulmfit"]  # 2e-2, 1e-2, 5e-3, 1e-3
    scaled = reproduce.found_rates(config, 4e-3).phases
    assert [lr for _, _, lr in scaled] == pytest.approx([4e-3, 2e-3, 1e-3, 2e-4])
    assert [(g, e) for g, e, _ in scaled] == [(1, 2), (2, 2), (3, 2), (0, 4)]
    assert config.phases[0][2] == 2e-2  # the plan's own config is left as it was


def test_report_gives_mean_and_spread_over_seeds():
    results = {
        reproduce.cell("imdb1k", "tfidf", s): {"accuracy": a}
        for s, a in enumerate((0.80, 0.82, 0.84))
    }
    assert reproduce.error_cell(results, "imdb1k", "tfidf") == "18.0% ± 2.0 (3)"
    assert reproduce.error_cell(results, "imdb1k", "ulmfit") == "…"


def test_a_finished_stage_whose_export_is_gone_runs_again(plan, tmp_path):
    stages = plan()
    results = {"pretrain": {"perplexity": 90.0}, "lm_trec": {"perplexity": 50.0}}
    (tmp_path / "lm_trec" / "export").mkdir(parents=True)
    # A folder with checkpoints but no export: the stage was cut off after results.json said
    # it had finished (results.json from git, the stage started again on a new machine).
    (tmp_path / "pretrain" / "checkpoints").mkdir(parents=True)
    reproduce.forget_lost_dependencies(tmp_path, results, stages)
    assert "pretrain" not in results  # lm_imdb, still to run, starts from it
    assert "lm_trec" in results  # its export is still there


def test_a_lost_stage_run_again_brings_back_the_lost_stage_it_starts_from(plan, tmp_path):
    stages = plan("whole")
    names = [name for name, _ in stages]
    results = {name: {"accuracy": 0.5} for name in names if name != "imdb25k_ulmfit"}
    for name in names:
        if name not in ("pretrain", "lm_imdb", "imdb25k_ulmfit"):
            (tmp_path / name / "export").mkdir(parents=True)
    reproduce.forget_lost_dependencies(tmp_path, results, stages)
    # imdb25k_ulmfit starts from lm_imdb, which starts from pretrain: both exports are gone
    assert "lm_imdb" not in results and "pretrain" not in results
    assert set(names) - set(results) == {"pretrain", "lm_imdb", "imdb25k_ulmfit"}


def test_an_ensemble_member_without_its_test_outputs_runs_again(plan, tmp_path):
    stages = plan("whole")
    names = [name for name, _ in stages]
    results = {name: {"accuracy": 0.5} for name in names if name != "imdb100_ulmfit_bwd"}
    for name in names:
        if name not in ("pretrain", "lm_imdb"):
            (tmp_path / name / "export").mkdir(parents=True)
    for name in reproduce.ensemble_members("imdb1k"):
        (tmp_path / name / "test_outputs.npz").touch()
    members = [*reproduce.ensemble_members("imdb100"), *reproduce.ensemble_members("imdb1k")]
    reproduce.forget_lost_dependencies(tmp_path, results, stages, None, members)
    # imdb100_ulmfit kept its export, not its outputs: it runs again, and so do the language
    # models it starts from, whose exports are gone; the imdb1k members kept their outputs.
    assert set(names) - set(results) == {
        "imdb100_ulmfit",
        "imdb100_ulmfit_bwd",
        "lm_imdb",
        "pretrain",
    }


def test_only_runs_the_stages_its_choice_starts_from(plan):
    stages = plan("whole")
    chosen = reproduce.selected_stages(stages, "imdb")
    assert {"pretrain", "pretrain_bwd", "lm_imdb_bwd", "imdb25k_ulmfit_bwd"} <= chosen
    assert not {"lm_trec", "lm_trec_bwd", "trec_ulmfit"} & chosen
    assert reproduce.selected_stages(stages, "") == {name for name, _ in stages}
    assert reproduce.selected_stages(stages, "trec_scratch") == {"trec_scratch"}


def test_epoch_choice_compares_the_exported_epoch_with_the_last(tmp_path):
    """scripts/experiments/epoch_choice.py: the README's line on choosing epochs on validation."""
    import json

    epoch_choice = experiment_script("epoch_choice")

    def stage(name, monitor, accuracies, best):
        (tmp_path / name).mkdir()
        epochs = [{"epoch": i, "accuracy": a} for i, a in enumerate(accuracies)]
        history = {"monitor": monitor, "best": {"epoch": best, "value": accuracies[best]}}
        (tmp_path / name / "valid_history.json").write_text(
            json.dumps(dict(history, epochs=epochs))
        )

    stage("imdb100_ulmfit", "accuracy", [0.5, 0.7, 0.6], best=1)
    stage("imdb100_scratch", "accuracy", [0.5, 0.6, 0.55], best=1)  # still running
    stage("lm_imdb", "loss", [0.2], best=0)  # language models choose by loss
    (tmp_path / "results.json").write_text(json.dumps({"imdb100_ulmfit": {}, "lm_imdb": {}}))
    assert epoch_choice.epoch_choices(tmp_path) == [("imdb100_ulmfit", 2, 3, 0.7, 0.6)]


def test_linear_probe_features_are_the_classifier_heads_input():
    """scripts/experiments/linear_probe.py: batched, length-sorted, padded features equal the
    concat pool of each document encoded alone (the README's probe of the frozen encoder)."""
    import jax
    import numpy as np

    from ulmfit_jax.models import classifier
    from ulmfit_jax.models.classifier import ClassifierConfig

    linear_probe = experiment_script("linear_probe")

    model = ClassifierConfig(vocab_size=30, n_class=2, emb_sz=4, n_hid=6, n_layers=2, bptt=5)
    params = classifier.init_classifier_params(jax.random.key(0), model)
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 30, size=n).astype(np.int32) for n in (3, 12, 5, 1, 9)]
    pooled, bags = linear_probe.encode(params, model, docs)
    for doc, row, bag in zip(docs, pooled, bags, strict=True):
        tokens, lengths = classifier.pad_documents([doc], model)
        outputs, keep = classifier.bpt3c_encode(params["encoder"], model, tokens, lengths, None)
        expected = classifier.masked_concat_pool(outputs, keep, lengths)[0]
        np.testing.assert_allclose(row, expected, atol=1e-6)
        embedding = np.asarray(params["encoder"]["embedding"])
        np.testing.assert_allclose(bag, embedding[doc].mean(axis=0), atol=1e-6)


def test_a_stage_resumed_after_a_kill_reports_the_time_of_every_attempt(
    plan, tmp_path, monkeypatch
):
    import json
    import time

    plan()  # fakes IMDb's location
    finished = ("pretrain", "pretrain_bwd", "lm_trec_bwd")  # "lm_trec" selects these too
    for name in finished:
        (tmp_path / name / "export").mkdir(parents=True)
    reproduce.save_results(tmp_path, {name: {"perplexity": 90.0} for name in finished})
    clock = [100.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])

    class Killed(Exception):
        pass

    def fake_run(config, workdir, resume=False):
        # Attempt 1 logs at 130 and is killed (the machine is gone until 500); attempt 2
        # logs at 510 and finishes at 600.
        with open(f"{workdir}/metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 1, "time": clock[0] + 30.0 if not resume else 510.0}))
            f.write("\n")
        if not resume:
            clock[0] = 500.0
            raise Killed
        clock[0] = 600.0
        return {"perplexity": 20.0}

    monkeypatch.setattr(reproduce.ulmfit, "run", fake_run)
    with pytest.raises(Killed):
        reproduce.run_all(tmp_path, only="lm_trec")
    results = reproduce.run_all(tmp_path, only="lm_trec")
    assert results["lm_trec"]["perplexity"] == 20.0
    assert results["lm_trec"]["seconds"] == pytest.approx(30.0 + 100.0)


def test_cells_never_measured_run_before_the_ones_run_again_for_lost_outputs(plan, tmp_path):
    stages = plan("whole")
    names = [name for name, _ in stages]
    # The situation after a machine move: the forward language models and (c) members lost
    # their exports and test outputs; (c) at 25k labels and everything backward never ran.
    results = {name: {"accuracy": 0.5} for name in names if not name.endswith("_bwd")}
    del results["imdb25k_ulmfit"]
    for name in results:
        if name not in ("pretrain", "lm_imdb", "lm_trec"):
            (tmp_path / name / "export").mkdir(parents=True)
    (tmp_path / "pretrain" / "export").mkdir(parents=True)  # trained again already
    members = [m for task in reproduce.TASKS for m in reproduce.ensemble_members(task)]
    reproduce.forget_lost_dependencies(tmp_path, results, stages, None, members)
    lost = reproduce.load_lost(tmp_path)
    assert {"lm_imdb", "lm_trec", "trec_ulmfit", "imdb100_ulmfit"} <= set(lost)
    assert "pretrain" not in lost and "imdb25k_ulmfit" not in lost
    pending = [name for name in names if name not in results]
    order = reproduce.new_cells_first(stages, pending, set(lost))
    assert sorted(order) == sorted(pending)
    # lm_imdb first (the new 25k cell starts from it), lm_trec and the re-runs last.
    assert order[:3] == ["lm_imdb", "imdb25k_ulmfit", "pretrain_bwd"]
    rerun_from = order.index("lm_trec")
    assert set(order[rerun_from:]) == set(lost) - {"lm_imdb"}
    for name, config in stages:  # every stage still runs after the one it starts from
        source = config.init.workdir.rsplit("/", 1)[-1] if config.init.workdir else ""
        if name in order and source in order:
            assert order.index(source) < order.index(name)


def test_command_line_mistakes_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main(["--workdir", str(tmp_path), "--size", "huge"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("train.reproduce: error: flag --size=huge: value should be one of")
