"""A named-entity tagger on ELMo (Peters et al. 2018's BiLSTM-CRF), e.g. CoNLL-2003.

    python -m train.elmo_tagger --config train/configs/elmo_tagger.py \
        --workdir runs/ner --config.bilm.dir=runs/elmo_sample/export \
        --config.data.path=/data/conll2003          # eng.train / eng.testa / eng.testb
    python -m train.elmo_tagger --config train/configs/elmo_tagger.py --workdir runs/ner \
        --config.bilm.dir=runs/elmo_sample/export --config.stage=predict \
        --config.predict.input=sentences.txt        # -> runs/ner/predictions.txt, token/TAG

Same flags, checkpoints, resume and one-line errors as `train.elmo`; trains with validation
each epoch, exports the best epoch (`WORKDIR/export/`) and writes its test span metrics to
`WORKDIR/test_metrics.json` (`elmo_jax.downstream.tagger_stage`).
"""

from __future__ import annotations

from train.elmo import run_task_program, task_stage


def run(config, workdir: str, resume: bool = False, resume_changed: bool = False):
    """Train and evaluate (returns the test metrics), or tag `predict.input` (returns the
    output file), by `config.stage`."""
    from elmo_jax.downstream.tagger_stage import predict_tags, train_tagger
    from ulmfit_jax.core.runner.workdir import WorkdirLock

    stage = task_stage(config)
    with WorkdirLock(workdir):  # before the data is read: a second run stops at once
        if stage == "predict":
            return predict_tags(config, workdir)
        return train_tagger(config, workdir, resume=resume, resume_changed=resume_changed)


if __name__ == "__main__":
    run_task_program("train.elmo_tagger", run)
