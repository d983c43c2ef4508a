"""fastai's own ULMFiT classifier on our language models: the fastai column of the results table.

    # with torch + fastai installed (../shared/STACK_NOTES.md), and the run's LMs in RUN:
    python scripts/experiments/fastai_column.py --workdir RUN --out results/fastai_column.json
    python scripts/experiments/fastai_column.py --workdir RUN --cells trec_ulmfit,imdb1k_ulmfit
    python scripts/experiments/fastai_column.py --smoke --out /tmp/smoke.json   # plumbing only

Each cell is one of `train.reproduce`'s (c) classifiers at `--size whole` (`trec_ulmfit`,
`imdb100_ulmfit`, `imdb100_ulmfit_s1`, ...), and everything but the training code is ours:

- the documents: our data layer's labelled subset, validation split and test subset for the
  cell's seed, tokenized by our tokenizer (fastai's rules, its batch path) and numericalized
  with the language model's vocabulary, exactly what our classifier reads;
- the encoder: the cell's language model (`RUN/lm_imdb`, `RUN/lm_trec`) written as fastai's
  encoder (`ulmfit_jax.weights.fastai_export`) and loaded into `get_text_classifier`;
- the recipe's numbers: the cell's phases (trainable groups, epochs, top rate), discriminative
  rates `slice(lr / 2.6**4, lr)`, batch size, `bptt`, `max_len`, `drop_mult`, AR/TAR, weight
  decay and seed.

fastai then trains as fastai does: `freeze_to(-n)` / `unfreeze()` and `fit_one_cycle` per phase
(moms 0.8/0.7/0.8), `SortedDL` batches padded by `pad_input_chunk`, its own initialisation of the
head and its own dropout streams. The epoch with the best validation accuracy over the whole
run is kept (fastai's `SaveModelCallback`, across phases as our keeper does), and the test
subset is scored once, at the end, with it. Results are written to `--out` after every cell
(atomically), and a cell already there is skipped, so a killed run continues.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def cell_data(config) -> dict:
    """The cell's numericalized documents and targets, as our classify stage reads them."""
    from ulmfit_jax.batching import corpus
    from ulmfit_jax.core.data.classification import load_classification, load_test
    from ulmfit_jax.core.data.spec import DataSpec
    from ulmfit_jax.stages.lm_stage import cache_dir
    from ulmfit_jax.weights.export import load_lm

    spec = DataSpec.from_config(config.data)
    data = load_classification(spec, seed=config.seed)
    test = load_test(spec, seed=config.seed)
    lm_params, lm_model, vocab, _ = load_lm(config.init.workdir)

    def ids(texts):
        docs = corpus.tokenize_texts(
            texts, cache_dir=cache_dir(config), n_workers=config.tokenizer_workers
        )
        out = corpus.numericalize(docs, vocab)
        limit = int(config.train.max_tokens)
        return [doc[:limit] if limit else doc for doc in out]

    return {
        "train": (ids(data.train.texts), data.targets(data.train)),
        "valid": (ids(data.valid.texts), data.targets(data.valid)),
        "test": (ids(test.texts), data.encoder.encode(test.raw_labels, test.where)),
        "classes": list(data.encoder.names),
        "encoder": lm_params["encoder"],
        "lm_model": lm_model,
    }


def smoke_data() -> tuple[dict, object]:
    """A random tiny LM over TREC-like synthetic documents: checks the plumbing, not accuracy."""
    import jax
    from ml_collections import ConfigDict

    from ulmfit_jax.models import awd_lstm

    rng = np.random.default_rng(0)
    model = awd_lstm.AWDLSTMConfig(vocab_size=60, emb_sz=16, n_hid=24, n_layers=3)
    params = awd_lstm.init_lm_params(jax.random.key(0), model)

    def docs(n):
        labels = rng.integers(0, 3, n)
        return [rng.integers(2 + 10 * y, 12 + 10 * y, rng.integers(5, 40)) for y in labels], labels

    config = ConfigDict(
        dict(
            seed=0,
            phases=((1, 1, 1e-2), (0, 1, 5e-4)),
            model=dict(bptt=16, max_len=48, drop_mult=0.5, lin_ftrs=(8,)),
            train=dict(batch_size=8, alpha=2.0, beta=1.0),
            optim=dict(weight_decay=0.01, lr_mult=2.6),
        )
    )
    data = {
        "train": docs(64),
        "valid": docs(16),
        "test": docs(24),
        "classes": ["a", "b", "c"],
        "encoder": params["encoder"],
        "lm_model": model,
    }
    return data, config


def run_fastai(data: dict, config, threads: int) -> dict:
    """Train fastai's classifier on `data` with `config`'s recipe; the best epoch's metrics."""
    import torch
    from fastai.text import all as fastai_text

    from ulmfit_jax.weights.fastai_export import encoder_state_dict

    torch.set_num_threads(threads)
    fastai_text.set_seed(int(config.seed), reproducible=True)
    lm = data["lm_model"]
    bptt, max_len = int(config.model.bptt), int(config.model.max_len)
    arch = dict(fastai_text.awd_lstm_clas_config, emb_sz=lm.emb_sz, n_hid=lm.n_hid)
    arch["n_layers"] = lm.n_layers
    model = fastai_text.get_text_classifier(
        fastai_text.AWD_LSTM,
        lm.vocab_size,
        len(data["classes"]),
        seq_len=bptt,
        config=arch,
        drop_mult=float(config.model.drop_mult),
        lin_ftrs=list(config.model.lin_ftrs),
        max_len=max_len,
    )
    encoder = encoder_state_dict(data["encoder"])
    model[0].module.load_state_dict({k: torch.from_numpy(v) for k, v in encoder.items()})

    def dataset(split):
        docs, targets = data[split]
        items = [
            (fastai_text.TensorText(np.asarray(d, np.int64)), fastai_text.TensorCategory(int(y)))
            for d, y in zip(docs, targets, strict=True)
        ]
        return items, [len(d) for d in docs]

    pad = functools.partial(fastai_text.pad_input_chunk, seq_len=bptt, pad_idx=1)
    batch = int(config.train.batch_size)

    def loader(split, train):
        items, lengths = dataset(split)
        return fastai_text.SortedDL(
            items,
            res=lengths,
            bs=batch,
            shuffle=train,
            drop_last=train,
            before_batch=pad,
            device="cpu",
            num_workers=0,  # JAX is loaded in this process: no forked workers
        )

    dls = fastai_text.DataLoaders(loader("train", True), loader("valid", False), device="cpu")
    learn = fastai_text.TextLearner(
        dls,
        model,
        loss_func=fastai_text.CrossEntropyLossFlat(),
        metrics=fastai_text.accuracy,
        splitter=fastai_text.awd_lstm_clas_split,
        alpha=float(config.train.alpha),
        beta=float(config.train.beta),
        wd=float(config.optim.weight_decay),
    )
    keeper = BestEpoch(fastai_text)
    lr_mult = float(config.optim.lr_mult)
    for groups, n_epochs, lr in config.phases:
        if groups:
            learn.freeze_to(-int(groups))
        else:
            learn.unfreeze()
        n_layer_groups = len(learn.opt.param_lists) if learn.opt else 4
        lrs = slice(lr / lr_mult ** (n_layer_groups - 1), lr)
        with learn.no_bar():
            learn.fit_one_cycle(int(n_epochs), lrs, moms=(0.8, 0.7, 0.8), cbs=[keeper.callback])
    learn.model.load_state_dict(keeper.best_state)
    test_dl = loader("test", False)
    with learn.no_bar():
        preds, targets = learn.get_preds(dl=test_dl)
    test_accuracy = float((preds.argmax(-1) == targets).float().mean())
    return {
        "valid_accuracy": keeper.best_value,
        "best_epoch": keeper.best_epoch + 1,
        "epochs": keeper.history,
        "test_accuracy": test_accuracy,
        "test_error": 1.0 - test_accuracy,
        "test_docs": len(data["test"][0]),
    }


class BestEpoch:
    """The epoch with the best validation accuracy over every `fit` of a run (fastai's
    `SaveModelCallback` watches one `fit`; ULMFiT's phases are several)."""

    def __init__(self, fastai_text):
        keeper = self

        class Keep(fastai_text.Callback):
            order = fastai_text.Recorder.order + 1  # after the Recorder has this epoch's values

            def after_epoch(self):
                names = [str(n) for n in self.learn.recorder.metric_names[1:-1]]
                values = dict(zip(names, self.learn.recorder.values[-1], strict=False))
                keeper.record(values, self.learn.model)

        self.callback = Keep()
        self.history: list[dict] = []
        self.best_value, self.best_epoch, self.best_state = -1.0, -1, None

    def record(self, values: dict, model) -> None:
        epoch = len(self.history)
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in values.items()}})
        if float(values["accuracy"]) > self.best_value:
            self.best_value, self.best_epoch = float(values["accuracy"]), epoch
            self.best_state = copy.deepcopy(model.state_dict())


def save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    os.replace(f.name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="the run holding lm_imdb/ and lm_trec/")
    parser.add_argument(
        "--cells",
        default="trec_ulmfit,imdb100_ulmfit,imdb100_ulmfit_s1,"
        "imdb100_ulmfit_s2,imdb1k_ulmfit,imdb1k_ulmfit_s1,imdb1k_ulmfit_s2",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a random tiny LM, synthetic data")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.smoke:
        data, config = smoke_data()
        results["smoke"] = run_fastai(data, config, args.threads)
        save(args.out, results)
        print(json.dumps(results["smoke"], indent=2))
        return
    if args.workdir is None:
        parser.error("--workdir is required (the run holding the language models)")
    from train.reproduce import experiments

    plan = dict(experiments(args.workdir, "whole"))
    for name in args.cells.split(","):
        if name in results:
            continue
        if name not in plan:
            parser.error(f"unknown cell {name!r}: expected one of {sorted(plan)}")
        start = time.time()
        print(f"== {name} (fastai) ==", flush=True)
        results[name] = run_fastai(cell_data(plan[name]), plan[name], args.threads)
        results[name]["seconds"] = time.time() - start
        print(json.dumps(results[name]), flush=True)
        save(args.out, results)


if __name__ == "__main__":
    main()
