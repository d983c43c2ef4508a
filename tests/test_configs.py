"""Every shipped config and each of its variants loads, and its stage plan builds."""

import importlib
import pathlib

import pytest

from elmo_jax.downstream.tagger_stage import TaggingSpec
from elmo_jax.training import pretrain
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.stages.lm_stage import lm_config
from ulmfit_jax.stages.phases import phases

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "train" / "configs"
NAMES = sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "base"))
VARIANTS = {"elmo_lm1b": ("", "sample", "tiny")}
CASES = [(name, v) for name in NAMES for v in VARIANTS.get(name, ("", "tiny"))]


def load(name, variant):
    return importlib.import_module(f"train.configs.{name}").get_config(variant)


def test_every_config_is_covered():
    assert len(NAMES) >= 8 and {"classify_trec", "elmo_lm1b", "elmo_tagger", "predict"} <= set(
        NAMES
    )


@pytest.mark.parametrize("name,variant", CASES)
def test_config_loads_and_builds_its_plan(name, variant):
    config = load(name, variant)
    if name.startswith("elmo_lm1b"):
        model, options = pretrain.model_config(config), pretrain.train_options(config)
        assert model.projection_dim > 0 and options.unroll_steps > 0
        return
    if name == "elmo_tagger":
        spec = TaggingSpec.from_config(config.data)
        assert spec.train and spec.valid and spec.test and config.stage == "train"
        assert config.model.scheme in ("BIO", "BIOUL") and config.train.epochs >= 1
        if variant == "tiny":
            assert (CONFIGS.parents[1] / spec.path / spec.train).is_file()
            assert config.model.hidden < 100
        return
    spec = DataSpec.from_config(config.data)
    if name.startswith("elmo_"):
        assert spec.train_split and spec.test_split and tuple(config.classifier.layers)
        return
    assert config.stage in ("pretrain", "finetune_lm", "classify", "evaluate", "predict")
    if config.stage in ("pretrain", "finetune_lm", "classify"):
        plan = phases(config)
        assert plan and all(p.epochs >= 1 for p in plan)
        assert lm_config(config, 100).vocab_size == 100
    if variant == "tiny" and config.stage != "predict":
        assert config.model.n_hid < 100 and config.data.train_limit > 0


@pytest.mark.parametrize("name", NAMES)
def test_unknown_variant_is_an_error_listing_the_known_ones(name):
    with pytest.raises(ValueError, match=r"unknown config variant 'tinyy'.*'tiny'"):
        load(name, "tinyy")


def test_data_sections_are_generated_from_the_data_spec():
    from ulmfit_jax.core.data.spec import data_config
    from ulmfit_jax.stages.defaults import base_config

    defaults = DataSpec()
    assert DataSpec.from_config(base_config("classify").data) == defaults
    assert set(base_config("classify").data.keys()) == {f for f in vars(defaults)}
    assert dict(data_config().to_dict(), splits=()) == dict(vars(defaults), splits=())
    custom = DataSpec(source="local", splits=(("train", "a.csv"), ("test", "b.csv")))
    assert custom.to_config().splits == "train=a.csv,test=b.csv"
    assert DataSpec.from_config(custom.to_config()) == custom
    elmo = load("elmo_classify_local", "").data
    assert set(elmo.keys()) == set(vars(defaults)) | {"tokenizer"}
