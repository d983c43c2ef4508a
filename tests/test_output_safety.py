"""Issue 39, cases 1-5: a program never deletes or overwrites what it did not write, never
writes over its input, and an export always holds the run that wrote it last
(`ulmfit_jax.core.outputs`). The LOST cases check the user's files byte for byte."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ulmfit_jax.core import outputs
from ulmfit_jax.core.outputs import OutputRefused
from ulmfit_jax.weights.export import check_export, export_params, load_export


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "train.csv").write_text("text,label\ngood,pos\n")
    return path


# -- the core mechanism ----------------------------------------------------------------------


def test_a_folder_is_built_beside_and_marked_with_its_run(tmp_path):
    owner = outputs.owner_record("ulmfit_jax", "classify", epoch=3, config={"lr": 1e-3})
    folder = outputs.write_folder(tmp_path / "out", lambda p: (p / "a").write_text("1"), owner)
    record = outputs.read_owner(folder)
    assert record["stage"] == "classify" and record["epoch"] == 3
    assert record["config_hash"] == outputs.config_hash({"lr": 1e-3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial sibling left

    def fails(path):
        (path / "a").write_text("2")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        outputs.write_folder(folder, fails, owner)
    assert (folder / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("where", ["same", "parent"])
def test_an_output_that_is_or_holds_an_input_is_refused_even_with_overwrite(tmp_path, where):
    data = user_folder(tmp_path / "data")
    before = snapshot(data)
    output = data if where == "same" else tmp_path
    owner = outputs.owner_record("elmo_jax", "classify")
    with pytest.raises(OutputRefused, match="would destroy the input"):
        outputs.write_folder(output, lambda p: None, owner, inputs=[data], overwrite=True)
    assert snapshot(data) == before


# -- case 1: the ELMo classifier's export_dir -------------------------------------------------


def elmo_csv_config(tmp_path):
    from elmo_fixtures import tiny_config

    from elmo_jax.weights.allennlp import write_random_weights
    from train.configs import elmo_classify_local

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid"):
        with (data / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            for i in range(8):
                writer.writerow([f"word{i} good" if i % 2 else f"word{i} bad", "ab"[i % 2]])
    bilm = tmp_path / "bilm"
    bilm.mkdir()
    write_random_weights(tiny_config(), bilm / "lm_weights.hdf5", bilm / "options.json", seed=2)
    c = elmo_classify_local.get_config("tiny")
    c.bilm.dir = str(bilm)
    c.data.path = str(data)
    c.data.text_fields = ("sentence",)
    c.data.valid_split = "valid"
    c.train.epochs = 1
    return c


@pytest.mark.parametrize("target", ["data folder", "user folder"])
def test_elmo_classifier_refuses_an_export_dir_it_did_not_write(tmp_path, target):
    from train.elmo_downstream import run

    c = elmo_csv_config(tmp_path)
    folder = Path(c.data.path) if target == "data folder" else user_folder(tmp_path / "mine")
    before = snapshot(folder)
    c.export_dir = str(folder)
    with pytest.raises(OutputRefused, match=str(folder)):
        run(c, str(tmp_path / "run"))
    assert snapshot(folder) == before
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def test_elmo_classifier_export_is_replaced_by_its_own_rerun(tmp_path):
    from elmo_jax.downstream.export import load_classifier, save_classifier

    meta = {"model": {"num_classes": 2, "input_dim": 4, "layers": [0]}, "labels": {}, "bilm": {}}
    folder = tmp_path / "export"
    save_classifier(folder, {"w": np.zeros(2)}, dict(meta, best={"epoch": 0}))
    save_classifier(folder, {"w": np.ones(2)}, dict(meta, best={"epoch": 2}))
    params, _, saved = load_classifier(folder)
    np.testing.assert_array_equal(params["w"], np.ones(2))
    assert saved["best"]["epoch"] == 2 and outputs.read_owner(folder)["epoch"] == 2
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    with pytest.raises(OutputRefused, match="was not written by this library"):
        save_classifier(mine, {"w": np.ones(2)}, meta)
    assert snapshot(mine) == before
    save_classifier(mine, {"w": np.ones(2)}, meta, overwrite=True)  # asked for explicitly
    assert load_classifier(mine)[0]["w"].shape == (2,)


def test_tagger_export_refuses_a_folder_it_did_not_write(tmp_path):
    from elmo_jax.downstream.tagger_export import check_tagger_export

    mine = user_folder(tmp_path / "export")
    with pytest.raises(OutputRefused, match="not this elmo_jax 'tag' run's"):
        check_tagger_export(mine)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "tagger.json").write_text(json.dumps({"config": {}, "bilm": {}}))
    check_tagger_export(legacy)  # an export from before the marker is the tagger's own


# -- case 2: elmo-jax embed X X ---------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--forget-sentences"], ["--overwrite"]])
def test_embed_never_writes_over_its_input(shared_dir, tmp_path, capsys, extra):
    from elmo_fixtures import fixture_dir

    from elmo_jax.__main__ import main

    directory = fixture_dir(shared_dir)
    model = ["--options", str(directory / "options.json")]
    model += ["--weights", str(directory / "lm_weights.hdf5")]
    source = tmp_path / "in.txt"
    source.write_text("The cat sat .\nA dog .\n", encoding="utf-8")
    before = source.read_bytes()
    assert main(["embed", *model, str(source), str(source), *extra]) == 2
    assert "would destroy the input" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_embed_refuses_a_file_it_did_not_write_unless_overwrite(shared_dir, tmp_path, capsys):
    from elmo_fixtures import fixture_dir

    from elmo_jax.__main__ import main

    directory = fixture_dir(shared_dir)
    model = ["--options", str(directory / "options.json")]
    model += ["--weights", str(directory / "lm_weights.hdf5")]
    source = tmp_path / "in.txt"
    source.write_text("The cat sat .\n", encoding="utf-8")
    target = tmp_path / "report.hdf5"
    target.write_text("a user's file\n")
    assert main(["embed", *model, str(source), str(target)]) == 2
    assert "was not written by this program" in capsys.readouterr().err
    assert target.read_text() == "a user's file\n"
    assert main(["embed", *model, str(source), str(target), "--overwrite"]) == 0
    assert main(["embed", *model, str(source), str(target)]) == 0  # now its own: replaced


# -- case 3: ULMFiT predict with predict.output = predict.input ------------------------------


@pytest.mark.parametrize("name", ["in.csv", "in.jsonl"])
def test_predict_never_writes_over_its_input(tmp_path, name):
    from train.configs import predict
    from ulmfit_jax.inference import stages

    source = tmp_path / name
    source.write_text("text\ngood movie\n" if name.endswith("csv") else '{"text": "good"}\n')
    before = source.read_bytes()
    c = predict.get_config()
    c.eval.workdirs = (str(tmp_path / "clf"),)
    c.predict.input = c.predict.output = str(source)
    with pytest.raises(OutputRefused, match="is the input"):
        stages.predict_stage(c)
    assert source.read_bytes() == before
    other = tmp_path / "report.csv"
    other.write_text("a user's file\n")
    c.predict.output = str(other)
    with pytest.raises(OutputRefused, match="was not written by this program"):
        stages.predict_stage(c)
    assert other.read_text() == "a user's file\n"


# -- cases 4 and 5: ULMFiT exports -----------------------------------------------------------


def converted(workdir: Path) -> Path:
    """A folder as `python -m ulmfit_jax convert` leaves it (`convert_lm`'s export)."""
    meta = {"stage": "converted_lm", "vocab": ["xxunk"], "model": {}, "backward": False}
    export_params(workdir, {"w": np.full(3, 7.0)}, meta, writer="convert")
    return workdir


def test_a_classifier_into_a_converted_folder_is_refused_before_training(tmp_path):
    from test_classifier_workflow import local_config, reviews, write_csv

    from ulmfit_jax.stages import classifier_stage

    workdir = converted(tmp_path / "lm")
    before = snapshot(workdir)
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "train.csv", reviews(40, 0))
    c = local_config(data, tmp_path)
    with pytest.raises(OutputRefused, match="holds a ulmfit_jax 'convert' output"):
        classifier_stage.classify_stage(c, workdir)
    assert snapshot(workdir) == before
    c.init.workdir = str(workdir)  # the converted LM as the classifier's start: its input
    c.overwrite = True
    with pytest.raises(OutputRefused, match="would destroy the input"):
        check_export(workdir, "classify", inputs=[c.init.workdir], overwrite=True)
    assert snapshot(workdir) == before


def test_overwrite_replaces_another_stages_export(tmp_path):
    workdir = converted(tmp_path / "lm")
    meta = {"stage": "classify", "best": {"epoch": 1}}
    with pytest.raises(OutputRefused):
        export_params(workdir, {"w": np.zeros(3)}, meta)
    export_params(workdir, {"w": np.zeros(3)}, meta, overwrite=True)
    params, saved = load_export(workdir, lambda m: {"w": np.zeros(3)})
    np.testing.assert_array_equal(params["w"], np.zeros(3))
    assert saved["stage"] == "classify"


@pytest.mark.parametrize("legacy", [False, True])
def test_a_new_best_epoch_replaces_the_stages_own_export(tmp_path, legacy):
    """A resumed run (or a re-run) that picks a new best epoch exports it: the export never
    keeps the first run's epoch while the log says "exporting"."""
    from ulmfit_jax.core.runner.checkpointing import Checkpointer

    workdir = tmp_path / "clf"
    first = {"stage": "classify", "best": {"epoch": 0}}
    if legacy:  # an export written before ownership markers
        ckpt = Checkpointer(workdir / "export", max_to_keep=1)
        ckpt.save(0, {"params": {"w": np.zeros(3)}}, first)
        ckpt.close()
    else:
        export_params(workdir, {"w": np.zeros(3)}, first)
    export_params(workdir, {"w": np.full(3, 4.0)}, {"stage": "classify", "best": {"epoch": 3}})
    params, meta = load_export(workdir, lambda m: {"w": np.zeros(3)})
    np.testing.assert_array_equal(params["w"], np.full(3, 4.0))
    assert meta["best"]["epoch"] == 3 and outputs.read_owner(workdir / "export")["epoch"] == 3
    assert sorted(p.name for p in workdir.iterdir()) == ["export"]


@pytest.mark.parametrize("program", ["elmo classifier", "elmo tagger"])
def test_elmo_predictions_never_overwrite_their_input(tmp_path, program):
    source = tmp_path / "in.txt"
    source.write_text("John lives in Paris .\n")
    before = source.read_bytes()
    with pytest.raises(OutputRefused, match="is the input"):
        if program == "elmo classifier":
            from elmo_jax.downstream.predict import predict_file

            predict_file(tmp_path / "export", source, source)
        else:
            from elmo_jax.downstream.tagger_stage import predict_tags
            from train.configs.elmo_tagger import get_config

            config = get_config("tiny")
            config.predict.input = config.predict.output = str(source)
            predict_tags(config, tmp_path / "run")
    assert source.read_bytes() == before
