"""The README's results: ULMFiT's ablations on IMDb and TREC-6 at a size 2 CPU cores train in hours.

    python -m train.reproduce --workdir runs/results            # runs what is missing
    python -m train.reproduce --workdir runs/results --report   # the table of what finished
    python -m train.reproduce --workdir runs/full --size full   # fastai's size, for a GPU/TPU

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
  imdb1k_ulmfit_first128  (whole-review sizes) (c) reading each review's first 128 tokens only

for the tasks imdb100, imdb1k, imdb25k (IMDb with 100, 1,000, 25,000 training labels) and trec,
and `<task>_tfidf`, TF-IDF + logistic regression on the same documents. Sizes with several
seeds add `<task>_<variant>_s1`, `_s2`, ... for the 100- and 1k-label cells (each seed its own
labelled subset, validation split and initialisation; the table gives mean ± spread). Sizes
with `lm_lr_find` (language-model fine-tuning) or `classifier_lr_find` first run
`<stage>_lrfind` (fastai's finder on the stage's first phase, seed 0) and train at its "valley"
rate. A finished stage whose export is gone (a new machine: only
`results.json` is committed) runs again when a later stage starts from it; (d) is scored from
its members' saved test outputs (`test_outputs.npz`), which a member that lost them makes again.
Stages run again so (what they had measured is kept in `lost.json`) wait until the cells never
measured have run, unless one of those starts from them.
A workdir belongs to one size (see SIZES): it records the size it was started with and refuses
another, so a rerun never mixes small and full-size stages in one table.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import sys
import time
from pathlib import Path

from absl import flags

from train import ulmfit
from train.configs import (
    classify_imdb,
    classify_trec,
    finetune_lm_imdb,
    pretrain_wikitext2,
)
from ulmfit_jax.core.commands import define_switches, parse_flags
from ulmfit_jax.core.data.imdb import find_imdb
from ulmfit_jax.core.paths import SHARED_DATA
from ulmfit_jax.core.runner.attempts import record_attempt, stage_seconds
from ulmfit_jax.inference.saved_outputs import TEST_OUTPUTS, ensemble_accuracy


@dataclasses.dataclass(frozen=True)
class Size:
    """Model and data sizes of one run of the experiments (0 in a limit means all)."""

    emb_sz: int
    n_hid: int
    max_vocab: int
    bptt: int
    imdb_max_tokens: int  # IMDb classifiers read each review's first N tokens
    imdb_test_limit: int  # IMDb test accuracy on a seeded subset of this many reviews
    imdb_lm_docs_per_split: int  # LM fine-tuning on this many of train and of unsupervised
    seeds: int = 1  # seeds of the 100- and 1k-label cells (each seed: its own labelled subset)
    lm_lr_find: bool = False  # LM fine-tuning rates from lr_find (see `found_rates`)
    classifier_lr_find: bool = False  # classifier rates from lr_find
    lm_phases: tuple = ((1, 1, 1e-2), (0, 1, 3e-3))  # IMDb LM fine-tuning (groups, epochs, lr)


SIZES = {
    # The README's table: fastai's AWD-LSTM shape (3 layers, tied decoder, the same dropouts)
    # at about a tenth of its width, ~5,600 tokens/s on 2 CPU cores (400/1152: ~1,500). The
    # first 128 tokens of a review (2 BPT3C chunks) keep the 25k-label runs in the budget; the
    # 5,000 test reviews give ±0.7 points of standard error.
    "small": Size(128, 384, 15000, 64, 128, 5000, 6000),
    # The "small" model with the levers of the second table: whole reviews (BPT3C up to
    # 64 * 20 = 1,280 tokens, fastai's max_len at this bptt) and LM fine-tuning on all 75,000
    # train + unlabelled reviews.
    # One epoch over those ~20M tokens is what a session's hours allow (~1 h); the 100- and
    # 1k-label cells run with 3 seeds. The rates are the recipes' (TASKS, `lm_phases`), not
    # lr_find's valley (`whole_valley` below): on TREC-6's validation split the recipes beat
    # the valley in all three classifier variants (accuracy 0.754-0.762 against 0.703-0.717),
    # and on IMDb's LM the finder's curve is flat from 1e-7 to 1e-2 (loss 5.7 to 5.5), where
    # the valley lands at 1.6e-4, 19x below the recipe.
    "whole": Size(128, 384, 15000, 64, 0, 5000, 0, seeds=3, lm_phases=((0, 1, 3e-3),)),
    # fastai's size and data, for a GPU or TPU: 400/1152, a 60k vocabulary, bptt 72, whole
    # reviews (BPT3C up to 72 * 20 tokens), all 75,000 reviews for LM fine-tuning, all 25,000
    # test reviews. Only the pretraining corpus stays WikiText-2 unless data.path is changed.
    "full": Size(400, 1152, 60000, 72, 0, 0, 0),
}
# The "whole" experiments with every fine-tuning and classifier stage's first rate at lr_find's
# valley (the later phases keep the recipe's ratios to it): what lr_find changes.
SIZES["whole_valley"] = dataclasses.replace(
    SIZES["whole"], lm_lr_find=True, classifier_lr_find=True
)

# Per task: (train_limit, batch size, ULMFiT phases as (groups, epochs, lr), scratch lr).
TASKS = {
    "imdb100": (100, 16, ((1, 8, 2e-2), (2, 8, 1e-2), (3, 8, 5e-3), (0, 16, 1e-3)), 1e-2),
    "imdb1k": (1000, 32, ((1, 2, 2e-2), (2, 2, 1e-2), (3, 2, 5e-3), (0, 4, 1e-3)), 1e-2),
    # fastai's IMDb recipe (5 epochs). A 2-epoch cut of it (head alone, then all at 2e-3) left
    # the pretrained classifiers far behind 2 epochs from scratch (33.1% against 21.2% error).
    "imdb25k": (0, 64, ((1, 1, 2e-2), (2, 1, 1e-2), (3, 1, 5e-3), (0, 2, 1e-3)), 1e-2),
    "trec": (0, 64, ((1, 2, 1e-2), (2, 2, 5e-3), (3, 2, 2.5e-3), (0, 6, 5e-4)), 5e-3),
}


def common(c, workdir: Path, size: Size):
    c.model.emb_sz, c.model.n_hid, c.model.n_layers = size.emb_sz, size.n_hid, 3
    c.vocab.max_vocab, c.vocab.min_freq = size.max_vocab, 3
    c.train.batch_size, c.train.bptt = 64, size.bptt
    c.model.bptt, c.model.max_len = size.bptt, size.bptt * 20
    c.train.checkpoint_every, c.train.log_every = 200, 50
    c.cache_dir = str(workdir / "cache")
    return c


def imdb_path(workdir: Path) -> str:
    found = find_imdb(cache_dir=workdir / "cache")
    if found is None:
        raise FileNotFoundError("IMDb not found: set $ULMFIT_IMDB to an aclImdb folder or tarball")
    return str(found)


def experiments(workdir: Path, size: str = "small") -> list[tuple[str, object]]:
    """(name, config) of every stage, in running order; `init.workdir`s point at earlier ones."""
    sz = SIZES[size]
    out = []
    imdb = imdb_path(workdir)

    def run_dir(name):
        return str(workdir / name)

    for backward in (False, True):
        sfx = "_bwd" if backward else ""
        pre = common(pretrain_wikitext2.get_config(), workdir, sz)
        pre.data.path = str(SHARED_DATA / "wikitext-2")
        pre.model.drop_mult = 0.2
        pre.phases = ((0, 3, 1e-2),)
        out.append(("pretrain" + sfx, pre))

        lm = common(finetune_lm_imdb.get_config(), workdir, sz)
        lm.data.path = imdb
        lm.data.lm_splits = ("train", "unsupervised")
        lm.data.train_limit = sz.imdb_lm_docs_per_split
        lm.model.drop_mult = 0.2
        lm.phases = sz.lm_phases
        lm.init.workdir = run_dir("pretrain" + sfx)
        out.append(("lm_imdb" + sfx, lm))

        lm_trec = common(finetune_lm_imdb.get_config(), workdir, sz)
        lm_trec.data.source, lm_trec.data.format = "local", "trec"
        lm_trec.data.path = str(SHARED_DATA / "trec")
        lm_trec.data.lm_splits = ("train",)
        lm_trec.model.drop_mult = 0.3
        lm_trec.phases = ((1, 2, 1e-2), (0, 6, 3e-3))
        lm_trec.init.workdir = run_dir("pretrain" + sfx)
        out.append(("lm_trec" + sfx, lm_trec))
        for c in (pre, lm, lm_trec):
            c.backward = backward

    def classifier(task, variant, seed=0):
        limit, batch, phases, scratch_lr = TASKS[task]
        if task == "trec":
            c = common(classify_trec.get_config(), workdir, sz)
            # Questions are ~12 tokens: BPT3C chunks (and padding) of 16, not 64.
            c.model.bptt, c.model.max_len = 16, 16 * 20
        else:
            c = common(classify_imdb.get_config(), workdir, sz)
            c.data.path = imdb
            c.train.max_tokens = sz.imdb_max_tokens
            c.data.test_limit = sz.imdb_test_limit
        c.data.train_limit = limit
        c.train.batch_size = batch
        c.seed = seed  # the labelled subset (train_limit), validation split and initialisation
        # The classifier chooses its epoch on its validation split; the test score of that
        # epoch is taken once, at the end (`test/accuracy`), and reported.
        c.eval.test_at_end = True
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
        for seed in task_seeds(task, sz):
            for variant in ("scratch", "nolmft", "ulmfit"):
                ordered.append((cell(task, variant, seed), classifier(task, variant, seed)))
        if task == "imdb1k" and sz.imdb_max_tokens == 0:
            # What whole reviews buy: (c) at 1k labels reading only each review's first 128
            # tokens, as the "small" table's classifiers did.
            first128 = classifier(task, "ulmfit")
            first128.train.max_tokens = 128
            ordered.append((cell(task, "ulmfit_first128"), first128))
    ordered += backward
    for task in ("trec", "imdb100", "imdb1k", "imdb25k"):
        for seed in task_seeds(task, sz):
            ordered.append((cell(task, "ulmfit_bwd", seed), classifier(task, "ulmfit_bwd", seed)))
    return ordered


def task_seeds(task: str, size: Size) -> range:
    """Seeds of a task's cells: `size.seeds` for the 100- and 1k-label cells, else one."""
    return range(size.seeds if task in ("imdb100", "imdb1k") else 1)


def cell(task: str, variant: str, seed: int = 0) -> str:
    """A result's name: `imdb100_ulmfit` for seed 0, `imdb100_ulmfit_s1` for seed 1, ..."""
    return f"{task}_{variant}" + (f"_s{seed}" if seed else "")


def lr_find_name(name: str) -> str | None:
    """The lr_find run whose rate stage `name` uses (seed 0's, shared by every seed of the
    cell, so the seeds measure the spread of one recipe); None for pretraining."""
    if name.startswith("pretrain"):
        return None
    return re.sub(r"_s\d+$", "", name) + "_lrfind"


def uses_lr_find(size: Size, name: str) -> bool:
    """Whether stage `name` trains at rates from lr_find in `size` (pretraining never does)."""
    if name.startswith("pretrain"):
        return False
    return size.lm_lr_find if name.startswith("lm_") else size.classifier_lr_find


def found_rates(config, suggestion: float):
    """A copy of `config` with its phases' rates scaled so that the first is lr_find's
    `suggestion` (fastai's "valley"); the later phases keep the recipe's ratios to the first
    (ULMFiT's 2e-2, 1e-2, 5e-3, 1e-3 pattern becomes s, s/2, s/4, s/20)."""
    scaled = config.copy_and_resolve_references()
    first = config.phases[0][2]
    scaled.phases = tuple((g, e, lr * suggestion / first) for g, e, lr in config.phases)
    return scaled


def ensemble_members(task: str, seed: int = 0) -> tuple[str, str]:
    """The stages whose test outputs (d) averages: the forward and backward ULMFiT classifiers."""
    return cell(task, "ulmfit", seed), cell(task, "ulmfit_bwd", seed)


def load_results(workdir: Path) -> dict:
    return _read_json(workdir / "results.json")


def save_results(workdir: Path, results: dict) -> None:
    _write_json(workdir / "results.json", results)


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
    os.replace(tmp, path)  # atomic: a kill never leaves half a file


def _read_json(path: Path) -> dict:
    """What `_write_json` wrote at `path`; {} before anything was."""
    return json.loads(path.read_text()) if path.is_file() else {}


def claim_size(workdir: Path, size: str) -> None:
    """Record `size` as the workdir's, or fail if it was started with another one."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: expected one of {sorted(SIZES)}")
    path = workdir / "size"
    if path.exists() and (recorded := path.read_text().strip()) != size:
        raise ValueError(
            f"{workdir} holds {recorded!r}-size experiments; run --size {recorded} "
            f"or use another --workdir for --size {size}"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(size + "\n")


def baseline(config) -> dict:
    """TF-IDF + logistic regression on the classifier's own train / validation / test documents
    (the same seeded subsets), `C` chosen on validation."""
    from ulmfit_jax.core.data.classification import load_classification, load_test
    from ulmfit_jax.core.data.spec import DataSpec
    from ulmfit_jax.stages.baselines import tfidf_logistic

    spec = DataSpec.from_config(config.data)
    data = load_classification(spec, seed=config.seed)
    test = load_test(spec, seed=config.seed)
    result = tfidf_logistic(
        data.train.texts,
        data.targets(data.train),
        data.valid.texts,
        data.targets(data.valid),
        test.texts,
        data.encoder.encode(test.raw_labels, test.where),
    )
    return dict(result, accuracy=result["test_accuracy"], train_docs=len(data.train))


LOST = "lost.json"


def run_all(workdir: Path, only: str = "", size: str = "small") -> dict:
    claim_size(workdir, size)
    sz = SIZES[size]
    results = load_results(workdir)
    plan = experiments(workdir, size)
    by_name = dict(plan)
    for task in TASKS:
        for seed in task_seeds(task, sz):
            name = cell(task, "tfidf", seed)
            if name in results or (only and only not in name):
                continue
            print(f"\n== {name} ==", flush=True)
            results[name] = baseline(by_name[cell(task, "scratch", seed)])
            print(
                f"valid {results[name]['valid_accuracy']:.4f} (C={results[name]['C']:g}), "
                f"test {results[name]['accuracy']:.4f}",
                flush=True,
            )
            save_results(workdir, results)
    chosen = selected_stages(plan, only)
    ensembles = [
        (task, seed)
        for task in TASKS
        for seed in task_seeds(task, sz)
        if cell(task, "ensemble", seed) not in results
        and set(ensemble_members(task, seed)) <= chosen
    ]
    forget_lost_dependencies(
        workdir, results, plan, chosen, [m for t, s in ensembles for m in ensemble_members(t, s)]
    )
    save_results(workdir, results)  # after lost.json: a stage is always in one of the two
    pending = [name for name, _ in plan if name not in results and name in chosen]
    for name in new_cells_first(plan, pending, set(load_lost(workdir))):
        config = by_name[name]
        if uses_lr_find(sz, name) and (finder := lr_find_name(name)):
            if finder not in results:
                print(f"\n== {finder} ==", flush=True)
                sweep = config.copy_and_resolve_references()
                sweep.lr_find = True
                results[finder] = ulmfit.run(sweep, str(workdir / finder))
                save_results(workdir, results)
            if valley := results[finder].get("valley"):  # else the recipe's own rates
                config = found_rates(config, valley)
        stage_dir = workdir / name
        resume = stage_dir.exists()
        print(f"\n== {name} ({'resuming' if resume else 'starting'}) ==", flush=True)
        start = record_attempt(stage_dir)
        metrics = ulmfit.run(config, str(stage_dir), resume=resume)
        results[name] = {k: float(v) for k, v in metrics.items()}
        # Every attempt's time: a stage resumed after a kill took several.
        seconds = stage_seconds(stage_dir, end=time.time())
        results[name]["seconds"] = time.time() - start if seconds is None else seconds
        if "test/accuracy" in metrics:
            results[name]["accuracy"] = float(metrics["test/accuracy"])
        save_results(workdir, results)
    for task, seed in ensembles:
        name = cell(task, "ensemble", seed)
        members = ensemble_members(task, seed)
        if not all(m in results for m in members):
            continue
        print(f"\n== {name} ==", flush=True)
        # The average of the members' saved test probabilities (their test_outputs.npz).
        results[name] = {"accuracy": ensemble_accuracy([workdir / m for m in members])}
        print(f"test {results[name]['accuracy']:.4f}", flush=True)
        save_results(workdir, results)
    return results


def selected_stages(plan, only: str = "") -> set[str]:
    """The stages `--only` runs: those whose name contains `only` (all when empty) and every
    stage they start from, transitively (`--only imdb` runs `pretrain_bwd` before
    `lm_imdb_bwd`), in the plan's order when run."""
    names = {name for name, _ in plan}
    return with_sources(plan, {n for n in names if not only or only in n}, names)


def with_sources(plan, names: set[str], among: set[str]) -> set[str]:
    """`names` and, transitively, the stages of `among` they start from (`init.workdir`)."""
    by_name = dict(plan)
    closed, todo = set(names), list(names)
    while todo:
        source = Path(by_name[todo.pop()].init.workdir or "").name
        if source in among and source not in closed:
            closed.add(source)
            todo.append(source)
    return closed


def forget_lost_dependencies(
    workdir: Path, results: dict, plan, chosen: set[str] | None = None, outputs_needed=()
) -> None:
    """Drop from `results` the finished stages whose exports are gone but which a stage still
    to run starts from (a new machine keeps `results.json` from git, not the checkpoints), and
    the stages of `outputs_needed` (a pending ensemble's members) whose `test_outputs.npz` is
    gone, so that they run again instead of a later stage failing. What they had measured is
    kept in `WORKDIR/lost.json` (`load_lost`)."""
    by_name = dict(plan)
    todo = [n for n in by_name if n not in results and (chosen is None or n in chosen)]
    lost = load_lost(workdir)
    for name in outputs_needed:
        if name in results and not (workdir / name / TEST_OUTPUTS).is_file():
            print(f"{name}: finished before, but its test outputs are gone; running it again")
            lost[name] = results.pop(name)
            todo.append(name)
    # A stage run again needs its own source too: follow the chain (lm_imdb lost, so pretrain).
    while todo:
        source = Path(by_name[todo.pop()].init.workdir or "").name
        if source in results and not (workdir / source / "export").is_dir():
            print(f"{source}: finished before, but its export is gone; running it again")
            lost[source] = results.pop(source)
            todo.append(source)
    if lost:
        _write_json(workdir / LOST, lost)


def load_lost(workdir: Path) -> dict:
    """The results of stages run again because their exports or test outputs were lost
    (`forget_lost_dependencies`): {name: what it had measured}."""
    return _read_json(workdir / LOST)


def new_cells_first(plan, pending: list[str], rerun: set[str]) -> list[str]:
    """The running order of the `pending` stages: those never measured, with the stages they
    start from, before the ones run again (`rerun`: measured before, run again for lost
    outputs) that no new stage needs; the plan's order within each group, so every stage
    still runs after its source.

    A run that lost its machine so measures the missing cells first; re-running the finished
    ones (for an ensemble's test outputs) can wait without delaying a new number.
    """
    needed = with_sources(plan, {name for name in pending if name not in rerun}, set(pending))
    return [n for n in pending if n in needed] + [n for n in pending if n not in needed]


EARLIER = "†"  # marks a number that includes results from `lost.json` (no markdown meaning)


def error_cell(results: dict, task: str, variant: str, earlier: dict | None = None) -> str:
    """Test error of a cell: `12.3%` for one seed, `12.3% ± 0.4 (3)` (mean, sample standard
    deviation, seeds) for several, `…` when none has finished. A seed missing from `results`
    is taken from `earlier` (`lost.json`: measured before its models were lost, being run
    again), and the cell marked `EARLIER`."""
    earlier = earlier or {}
    errors, marked = [], False
    for seed in itertools.count():
        name = cell(task, variant, seed)
        r = results.get(name, earlier.get(name))
        if r is None:
            break
        errors.append(100 * (1 - r["accuracy"]))
        marked |= name not in results
    mark = EARLIER if marked else ""
    if not errors:
        return "…"
    if len(errors) == 1:
        return f"{errors[0]:.1f}%{mark}"
    mean = sum(errors) / len(errors)
    std = (sum((e - mean) ** 2 for e in errors) / (len(errors) - 1)) ** 0.5
    return f"{mean:.1f}% ± {std:.1f} ({len(errors)}){mark}"


def report(results: dict, earlier: dict | None = None) -> str:
    """The README's tables (markdown) from `results.json`, with `lost.json`'s numbers (marked)
    where a stage is being run again."""
    earlier = earlier or {}
    lines = [
        "| task | TF-IDF + LR | (a) from scratch | (b) no LM fine-tuning | (c) ULMFiT "
        "| (c) backward | (d) fwd+bwd ensemble |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"imdb100": "IMDb, 100 labels", "imdb1k": "IMDb, 1k labels"}
    names.update({"imdb25k": "IMDb, 25k labels", "trec": "TREC-6"})
    for task in ("imdb100", "imdb1k", "imdb25k", "trec"):
        cells = []
        for variant in ("tfidf", "scratch", "nolmft", "ulmfit", "ulmfit_bwd", "ensemble"):
            cells.append(error_cell(results, task, variant, earlier))
        lines.append(f"| {names[task]} | " + " | ".join(cells) + " |")
    levers = (("whole reviews", "imdb1k_ulmfit"), ("first 128 tokens", "imdb1k_ulmfit_first128"))
    if all(name in results or name in earlier for _, name in levers):
        lines += ["", "| IMDb, 1k labels, (c) ULMFiT, seed 0 | test error |", "| --- | --- |"]
        for reads, name in levers:
            r, mark = (results[name], "") if name in results else (earlier[name], EARLIER)
            lines.append(f"| {reads} | {100 * (1 - r['accuracy']):.1f}%{mark} |")
    lines += ["", "| language model | validation perplexity | minutes |", "| --- | --- | --- |"]
    for name in ("pretrain", "pretrain_bwd", "lm_imdb", "lm_imdb_bwd", "lm_trec", "lm_trec_bwd"):
        r, mark = (results[name], "") if name in results else (earlier.get(name), EARLIER)
        if r:
            lines.append(f"| {name}{mark} | {r['perplexity']:.1f} | {r['seconds'] / 60:.0f} |")
    if EARLIER in "\n".join(lines):
        lines += [
            "",
            f"{EARLIER} includes results of stages whose models were lost and which are being "
            "run again (`lost.json`).",
        ]
    return "\n".join(lines)


def _define_flags(flag_values: flags.FlagValues) -> None:
    def text(name: str, default: str, help: str) -> None:
        flags.DEFINE_string(name, default, help, flag_values=flag_values)

    text("workdir", "runs/results", "one folder per experiment below it")
    define_switches(flag_values, {"report": "print the tables and exit"})
    text("only", "", "run only experiments whose name has this, and the stages they start from")
    flags.DEFINE_enum(
        "size", "small", sorted(SIZES), "see SIZES in train/reproduce.py", flag_values=flag_values
    )


def main(argv: list[str] | None = None) -> dict:
    """Run what is missing, or only `--report`; prints the tables and returns the results."""
    argv = sys.argv[1:] if argv is None else argv
    args, _ = parse_flags("train.reproduce", _define_flags, argv, about=__doc__.splitlines()[0])
    workdir = Path(args.workdir)
    if args.report:
        results = load_results(workdir)
    else:
        results = run_all(workdir, args.only, args.size)
    print(report(results, load_lost(workdir)))
    return results


if __name__ == "__main__":
    main()
