"""The README's main job: the whole ULMFiT method, then the same classifier from scratch.

    python -m train.demo [--workdir runs/demo] [--tiny]

1. pretrain      an AWD-LSTM language model on WikiText-2 (general English)
2. finetune_lm   it on IMDb reviews (top group first, then all groups; discriminative LR)
3. classify      IMDb sentiment with gradual unfreezing, discriminative LR and STLR
4. evaluate      on IMDb test reviews, beside the same classifier trained from scratch
5. predict       a few reviews

Data: IMDb from a local aclImdb copy (`$ULMFIT_IMDB`, or ../shared/data/imdb on this project's
machines) or TFDS's prepared `imdb_reviews`; WikiText-2 from `$ULMFIT_WIKITEXT2` or
../shared/data/wikitext-2. When they are missing it says so and uses a corpus of real English
that ships with Python (the standard library's docstrings, classified by module family), so the
command always works offline. Sizes are chosen to finish in under 10 minutes on 2 CPU cores;
`--tiny` shrinks everything to a smoke test of about a minute.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from absl import flags

from train import ulmfit
from train.configs import classify_imdb, finetune_lm_imdb, pretrain_wikitext2
from train.configs.base import tiny
from ulmfit_jax.batching import embedded_corpus
from ulmfit_jax.core.commands import define_switches, parse_flags
from ulmfit_jax.core.data.imdb import find_imdb, imdb_downloadable
from ulmfit_jax.core.paths import SHARED_DATA
from ulmfit_jax.inference.predictor import Predictor

WIKITEXT2 = Path(os.environ.get("ULMFIT_WIKITEXT2", SHARED_DATA / "wikitext-2"))
REVIEWS = [
    "One of the best films I have seen in years: moving, funny and beautifully acted.",
    "A dull, lifeless script and wooden acting. I want my two hours back.",
    "Not bad, but the second half drags and the ending makes no sense.",
]


def demo_model(c, args):
    """The demo's model and batch sizes: small enough for 2 CPU cores."""
    c.model.emb_sz, c.model.n_hid, c.model.n_layers = 128, 256, 3
    c.vocab.max_vocab, c.vocab.min_freq = 12000, 2
    c.train.batch_size, c.train.bptt = 32, 48
    c.model.bptt, c.model.max_len, c.model.lin_ftrs = 48, 48 * 6, (50,)
    c.train.checkpoint_every, c.train.log_every = 200, 20
    c.cache_dir = str(args.workdir / "cache")
    c.data.tfds_dir = str(args.workdir / "tfds")
    c.tokenizer_workers = 2
    if args.tiny:
        tiny(c)
        c.cache_dir, c.data.tfds_dir = str(args.workdir / "cache"), str(args.workdir / "tfds")
    return c


def configure(args):
    """Stage configs for the data found on this machine; returns (configs, description)."""
    use_real = args.corpus in ("auto", "imdb")
    imdb = find_imdb(cache_dir=args.workdir / "cache") if use_real else None
    if imdb is None and use_real and imdb_downloadable():
        imdb = "tfds"  # TFDS's imdb_reviews, downloaded and prepared on first use
    have_wiki = use_real and (WIKITEXT2 / "wiki.train.tokens").is_file()
    if args.corpus == "imdb" and (imdb is None or not have_wiki):
        raise FileNotFoundError("--corpus imdb: IMDb or WikiText-2 not found (see --help)")
    pre = demo_model(pretrain_wikitext2.get_config(), args)
    lm = demo_model(finetune_lm_imdb.get_config(), args)
    clas = demo_model(classify_imdb.get_config(), args)
    if imdb is not None and have_wiki:
        pre.data.path = str(WIKITEXT2)
        pre.data.train_limit, pre.data.valid_limit = 80, 20  # articles (~300k tokens)
        for c in (lm, clas):
            c.data.source, c.data.path = "imdb", "" if imdb == "tfds" else str(imdb)
        lm.data.lm_splits, lm.data.train_limit = ("unsupervised",), 1000
        clas.data.train_limit, clas.data.test_limit = 1000, 500
        clas.data.valid_limit = 250  # scored after every epoch: a seeded 250 of the held-out 10%
        clas.train.max_tokens = 256
        where = "TFDS imdb_reviews" if imdb == "tfds" else imdb
        source = f"IMDb ({where}) with WikiText-2 pretraining ({WIKITEXT2})"
    else:
        if args.corpus == "auto":
            missing = [n for n, ok in (("IMDb", imdb), ("WikiText-2", have_wiki)) if not ok]
            print(
                f"{' and '.join(missing)} not found (set $ULMFIT_IMDB / $ULMFIT_WIKITEXT2): "
                "using the Python standard library's docstrings, which ship with Python"
            )
        folder = args.workdir / "stdlib_corpus"
        embedded_corpus.write_jsonl(folder)
        pre.data.source, pre.data.format, pre.data.path = "local", "jsonl", str(folder)
        pre.data.splits, pre.data.valid_split = "train=general.jsonl", ""
        for c in (lm, clas):
            c.data.source, c.data.format, c.data.path = "local", "jsonl", str(folder)
            c.data.splits = "train=train.jsonl,test=test.jsonl"
        clas.data.label_field = "label"
        lm.data.lm_splits = ("train", "test")
        source = "Python standard-library docstrings (3 module families)"
    if args.tiny:
        for c in (pre, lm, clas):
            c.data.train_limit, c.data.valid_limit, c.data.test_limit = 40, 10, 40
    pre.optim.schedule = "one_cycle"
    pre.phases = ((0, 1, 1e-2),)
    lm.phases = ((1, 1, 1e-2), (0, 1, 5e-3))
    clas.phases = ((1, 1, 2e-2), (2, 1, 1e-2), (0, 3, 5e-3))
    return pre, lm, clas, source


def _define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", "runs/demo", "where the runs go", flag_values=flag_values)
    define_switches(flag_values, {"tiny": "a one-minute smoke run"})
    flags.DEFINE_enum(
        "corpus",
        "auto",
        ["auto", "imdb", "stdlib"],
        "auto: IMDb + WikiText-2 when found, else the stdlib docstrings",
        flag_values=flag_values,
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the demo (flags: `--workdir`, `--tiny`, `--corpus`); returns the accuracies."""
    argv = sys.argv[1:] if argv is None else argv
    values, _ = parse_flags("train.demo", _define_flags, argv, about=__doc__.splitlines()[0])
    args = SimpleNamespace(workdir=Path(values.workdir), tiny=values.tiny, corpus=values.corpus)
    runs = args.workdir
    for stage in ("pretrain", "lm", "clas", "scratch"):
        shutil.rmtree(runs / stage, ignore_errors=True)  # the demo always starts afresh
    started = time.perf_counter()
    pre, lm, clas, source = configure(args)
    print(f"data: {source}")

    timings = {}

    def stage(name, config, workdir):
        t0 = time.perf_counter()
        print(f"\n== {name} ==")
        result = ulmfit.run(config, workdir)
        timings[name] = time.perf_counter() - t0
        return result

    stage("pretrain", pre, runs / "pretrain")
    lm.init.workdir = str(runs / "pretrain")
    lm_metrics = stage("finetune_lm", lm, runs / "lm")
    clas.init.workdir = str(runs / "lm")
    ulmfit_result = stage("classify (ULMFiT)", clas, runs / "clas")
    scratch = demo_model(classify_imdb.get_config(), args)
    scratch.data = clas.data
    scratch.train.max_tokens = clas.train.max_tokens
    scratch.init.workdir = ""
    # The same number of epochs, every group trained at once from a random start.
    scratch.phases = ((0, sum(epochs for _, epochs, _ in clas.phases), 1e-2),)
    scratch_result = stage("classify (from scratch)", scratch, runs / "scratch")

    def test_accuracy(workdir: Path) -> float:
        """The classifier's test accuracy (the evaluate stage: training never read test)."""
        config = clas.copy_and_resolve_references()
        config.stage, config.eval.workdirs = "evaluate", (str(workdir),)
        return ulmfit.run(config, str(workdir / "evaluate"))[str(workdir)]["accuracy"]

    ulmfit_acc, scratch_acc = test_accuracy(runs / "clas"), test_accuracy(runs / "scratch")
    predictor = Predictor.from_workdir(runs / "clas")
    print("\n== predict ==")
    predictions = predictor.predict(REVIEWS)
    for review, probs, label in zip(REVIEWS, predictions, predictions.labels, strict=True):
        print(f"{label!s:>8} ({probs.max():.2f})  {review}")

    total = time.perf_counter() - started
    print("\n== result ==")
    print(f"data: {source}")
    print(f"fine-tuned LM validation perplexity: {lm_metrics['perplexity']:.1f}")
    print(f"test accuracy, ULMFiT (pretrain, fine-tune, classify): {ulmfit_acc:.4f}")
    print(f"test accuracy, the same classifier from scratch:       {scratch_acc:.4f}")
    print("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    print(f"total {total / 60:.1f} min")
    valid = {
        k: r["valid/accuracy"] for k, r in (("ulmfit", ulmfit_result), ("scratch", scratch_result))
    }
    print(
        f"validation accuracy of the chosen epochs: ULMFiT {valid['ulmfit']:.4f}, "
        f"from scratch {valid['scratch']:.4f}"
    )
    return {"ulmfit": ulmfit_acc, "scratch": scratch_acc, "valid": valid}


if __name__ == "__main__":
    main()
