"""The README's results: ULMFiT's ablations on IMDb and TREC-6 at a size 2 CPU cores train in hours.

    python -m train.reproduce --workdir runs/results            # runs what is missing
    python -m train.reproduce --workdir runs/results --report   # the table of what finished

Every experiment is one stage of `python -m train.ulmfit` in its own folder under `--workdir`;
a finished stage is recorded in `results.json` and skipped, a stage that was cut off (killed,
preempted, out of time) is resumed from its last checkpoint. Rerunning the command therefore
continues where it stopped, and the table can be printed at any point.

The experiments, in the order they run (forward models first, so the table fills early):

  pretrain          AWD-LSTM LM on WikiText-2 (forward, then backward)
  lm_imdb           fine-tuned on IMDb train + unlabelled reviews (a seeded subset, see SIZES)
  lm_trec           fine-tuned on the TREC-6 training questions
  <task>_scratch    (a) the classifier trained from scratch (all groups, same number of epochs)
  <task>_nolmft     (b) ULMFiT without LM fine-tuning: the classifier on the pretrained LM
  <task>_ulmfit     (c) full ULMFiT: fine-tuned LM, discriminative LR, STLR, gradual unfreezing
  <task>_ulmfit_bwd     the same on the backward LM; (d) is the average of (c) and this

for the tasks imdb100, imdb1k, imdb25k (IMDb with 100, 1,000, 25,000 training labels) and trec.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from train import ulmfit
from train.configs import (
    classify_imdb,
    classify_trec,
    evaluate_imdb,
    finetune_lm_imdb,
    pretrain_wikitext2,
)
from ulmfit_jax import text_data

# The model: fastai's AWD-LSTM shape (3 layers, tied decoder, the same dropouts) at about a
# tenth of its width, which trains at ~5,600 tokens/s on 2 CPU cores (400/1152: ~1,500).
MODEL = dict(emb_sz=128, n_hid=384, n_layers=3)
BPTT = 64
# IMDb classifiers read each review's first 128 tokens (2 BPT3C chunks) so that the 25k-label
# runs fit in the budget; IMDb test accuracy is on a seeded 5,000-review subset (±0.4% at 90%).
IMDB_MAX_TOKENS = 128
IMDB_TEST_LIMIT = 5000
# IMDb LM fine-tuning: a seeded subset of this many reviews from each of train and unsupervised.
IMDB_LM_DOCS_PER_SPLIT = 6000

# Per task: (train_limit, batch size, ULMFiT phases as (groups, epochs, lr), scratch lr).
TASKS = {
    "imdb100": (100, 16, ((1, 8, 2e-2), (2, 8, 1e-2), (3, 8, 5e-3), (0, 16, 1e-3)), 1e-2),
    "imdb1k": (1000, 32, ((1, 2, 2e-2), (2, 2, 1e-2), (3, 2, 5e-3), (0, 4, 1e-3)), 1e-2),
    # fastai's IMDb recipe (5 epochs). A 2-epoch cut of it (head alone, then all at 2e-3) left
    # the pretrained classifiers far behind 2 epochs from scratch (33.1% against 21.2% error).
    "imdb25k": (0, 64, ((1, 1, 2e-2), (2, 1, 1e-2), (3, 1, 5e-3), (0, 2, 1e-3)), 1e-2),
    "trec": (0, 64, ((1, 2, 1e-2), (2, 2, 5e-3), (3, 2, 2.5e-3), (0, 6, 5e-4)), 5e-3),
}


def common(c, workdir: Path):
    c.model.emb_sz, c.model.n_hid, c.model.n_layers = (
        MODEL["emb_sz"],
        MODEL["n_hid"],
        MODEL["n_layers"],
    )
    c.vocab.max_vocab, c.vocab.min_freq = 15000, 3
    c.train.batch_size, c.train.bptt = 64, BPTT
    c.model.bptt, c.model.max_len = BPTT, BPTT * 20
    c.train.checkpoint_every, c.train.log_every = 200, 50
    c.cache_dir = str(workdir / "cache")
    return c


def imdb_path(workdir: Path) -> str:
    found = text_data.find_imdb(cache_dir=workdir / "cache")
    if found is None:
        raise FileNotFoundError("IMDb not found: set $ULMFIT_IMDB to an aclImdb folder or tarball")
    return str(found)


def experiments(workdir: Path) -> list[tuple[str, object]]:
    """(name, config) of every stage, in running order; `init.workdir`s point at earlier ones."""
    out = []
    imdb = imdb_path(workdir)

    def run_dir(name):
        return str(workdir / name)

    for backward in (False, True):
        sfx = "_bwd" if backward else ""
        pre = common(pretrain_wikitext2.get_config(), workdir)
        pre.data.path = str(text_data.REPO_ROOT.parent / "shared/data/wikitext-2")
        pre.model.drop_mult = 0.2
        pre.phases = ((0, 3, 1e-2),)
        out.append(("pretrain" + sfx, pre))

        lm = common(finetune_lm_imdb.get_config(), workdir)
        lm.data.path = imdb
        lm.data.lm_splits = ("train", "unsupervised")
        lm.data.train_limit = IMDB_LM_DOCS_PER_SPLIT
        lm.model.drop_mult = 0.2
        lm.phases = ((1, 1, 1e-2), (0, 1, 3e-3))
        lm.init.workdir = run_dir("pretrain" + sfx)
        out.append(("lm_imdb" + sfx, lm))

        lm_trec = common(finetune_lm_imdb.get_config(), workdir)
        lm_trec.data.source, lm_trec.data.format = "local", "trec"
        lm_trec.data.path = str(text_data.REPO_ROOT.parent / "shared/data/trec")
        lm_trec.data.lm_splits = ("train",)
        lm_trec.model.drop_mult = 0.3
        lm_trec.phases = ((1, 2, 1e-2), (0, 6, 3e-3))
        lm_trec.init.workdir = run_dir("pretrain" + sfx)
        out.append(("lm_trec" + sfx, lm_trec))
        for c in (pre, lm, lm_trec):
            c.backward = backward

    def classifier(task, variant):
        limit, batch, phases, scratch_lr = TASKS[task]
        if task == "trec":
            c = common(classify_trec.get_config(), workdir)
            # Questions are ~12 tokens: BPT3C chunks (and padding) of 16, not 64.
            c.model.bptt, c.model.max_len = 16, 16 * 20
        else:
            c = common(classify_imdb.get_config(), workdir)
            c.data.path = imdb
            c.train.max_tokens = IMDB_MAX_TOKENS
            c.data.test_limit = IMDB_TEST_LIMIT
        c.data.train_limit = limit
        c.train.batch_size = batch
        lm_name = "lm_trec" if task == "trec" else "lm_imdb"
        c.phases = phases
        if variant == "scratch":
            c.init.workdir = ""
            c.phases = ((0, sum(p[1] for p in phases), scratch_lr),)
        elif variant == "nolmft":
            c.init.workdir = run_dir("pretrain")
        elif variant == "ulmfit":
            c.init.workdir = run_dir(lm_name)
        else:  # ulmfit_bwd
            c.init.workdir = run_dir(lm_name + "_bwd")
            c.backward = True
        return c

    forward = [(n, c) for n, c in out if not n.endswith("_bwd")]
    backward = [(n, c) for n, c in out if n.endswith("_bwd")]
    ordered = list(forward)
    for task in ("trec", "imdb100", "imdb1k", "imdb25k"):
        for variant in ("scratch", "nolmft", "ulmfit"):
            ordered.append((f"{task}_{variant}", classifier(task, variant)))
    ordered += backward
    for task in ("trec", "imdb100", "imdb1k", "imdb25k"):
        ordered.append((f"{task}_ulmfit_bwd", classifier(task, "ulmfit_bwd")))
    return ordered


def ensemble_config(task: str, workdir: Path):
    """The evaluate stage of (d): forward and backward ULMFiT classifiers averaged."""
    if task == "trec":
        c = common(classify_trec.get_config(), workdir)
        c.stage = "evaluate"
    else:
        c = common(evaluate_imdb.get_config(), workdir)
        c.data.path = imdb_path(workdir)
        c.data.test_limit = IMDB_TEST_LIMIT
    c.eval.workdirs = (str(workdir / f"{task}_ulmfit"), str(workdir / f"{task}_ulmfit_bwd"))
    return c


def load_results(workdir: Path) -> dict:
    path = workdir / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(workdir: Path, results: dict) -> None:
    tmp = workdir / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True))
    os.replace(tmp, workdir / "results.json")  # atomic: a kill never leaves half a file


def run_all(workdir: Path, only: str = "") -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    results = load_results(workdir)
    for name, config in experiments(workdir):
        if name in results or (only and only not in name):
            continue
        stage_dir = workdir / name
        resume = stage_dir.exists()
        print(f"\n== {name} ({'resuming' if resume else 'starting'}) ==", flush=True)
        start = time.perf_counter()
        metrics = ulmfit.run(config, str(stage_dir), resume=resume)
        results[name] = dict(
            {k: float(v) for k, v in metrics.items()}, seconds=time.perf_counter() - start
        )
        save_results(workdir, results)
    for task in TASKS:
        name = f"{task}_ensemble"
        needed = (f"{task}_ulmfit", f"{task}_ulmfit_bwd")
        if name in results or not all(n in results for n in needed):
            continue
        print(f"\n== {name} ==", flush=True)
        metrics = ulmfit.run(ensemble_config(task, workdir), None)
        results[name] = {"accuracy": float(metrics["ensemble"])}
        save_results(workdir, results)
    return results


def report(results: dict) -> str:
    """The README's tables (markdown) from `results.json`."""
    lines = [
        "| task | (a) from scratch | (b) no LM fine-tuning | (c) ULMFiT | (c) backward "
        "| (d) fwd+bwd ensemble |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    names = {"imdb100": "IMDb, 100 labels", "imdb1k": "IMDb, 1k labels"}
    names.update({"imdb25k": "IMDb, 25k labels", "trec": "TREC-6"})
    for task in ("imdb100", "imdb1k", "imdb25k", "trec"):
        cells = []
        for variant in ("scratch", "nolmft", "ulmfit", "ulmfit_bwd", "ensemble"):
            r = results.get(f"{task}_{variant}")
            cells.append(f"{100 * (1 - r['accuracy']):.1f}%" if r else "…")
        lines.append(f"| {names[task]} | " + " | ".join(cells) + " |")
    lines += ["", "| language model | validation perplexity | minutes |", "| --- | --- | --- |"]
    for name in ("pretrain", "pretrain_bwd", "lm_imdb", "lm_imdb_bwd", "lm_trec", "lm_trec_bwd"):
        r = results.get(name)
        if r:
            lines.append(f"| {name} | {r['perplexity']:.1f} | {r['seconds'] / 60:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/results"))
    parser.add_argument("--report", action="store_true", help="print the tables and exit")
    parser.add_argument("--only", default="", help="run only experiments whose name has this")
    args = parser.parse_args(argv)
    results = load_results(args.workdir) if args.report else run_all(args.workdir, args.only)
    print(report(results))
    return results


if __name__ == "__main__":
    main()
