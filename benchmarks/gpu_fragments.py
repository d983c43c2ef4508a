"""Epoch fragments at `train.reproduce --size full` shapes, and how long that run would take.

The GPU check's third part (`benchmarks.gpu_check`): N steps of the real LM and classifier
training steps, built as `train.reproduce --size full` builds them (its stage configs, the
stage's optimiser from `make_phase_optimizer`, the data-parallel mesh of `mesh_for_batch`,
the `TrainStep`s of `make_lm_train_step` / `make_classifier_train_step`, batches from
`LMStream` / `ClassifierBatches`),
then a time estimate of the whole run from those step times and the corpora's sizes (`CORPUS`).

    python -m benchmarks.gpu_fragments [--quick] [--steps 10]    # prints the JSON

The configs come from `train.reproduce` (which needs `ml_collections`); the token ids are
random (the step's cost does not depend on them) and the documents' lengths are drawn from the
lognormal fits in `CORPUS`, so no dataset is needed on the GPU machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

# Measured with the project's fastai tokenizer (scripts/experiments/measure_corpus_sizes.py,
# 2026-12): documents, tokens, and the lognormal fit of the document lengths (median, sigma of
# the log length, longest). IMDb splits from a seeded sample of 3,000 reviews each (the sample's
# longest was 1,562 tokens; `max` is IMDb's longest review, about 3,000). WikiText-2's
# validation split: its 217,646 words times the train split's tokens per word (1.137).
CORPUS = {
    "imdb_train": dict(docs=25_000, tokens=7_353_092, median=223.5, sigma=0.637, max=3_000),
    "imdb_test": dict(docs=25_000, tokens=7_293_817, median=221.0, sigma=0.639, max=3_000),
    "imdb_unsupervised": dict(docs=50_000, tokens=15_325_867, median=228.0, sigma=0.648, max=3_000),
    "wikitext2_train": dict(docs=600, tokens=2_374_477, median=2834.5, sigma=0.741, max=21_367),
    "wikitext2_valid": dict(docs=60, tokens=247_000, median=2834.5, sigma=0.741, max=21_367),
    "trec_train": dict(docs=5_452, tokens=75_563, median=13.0, sigma=0.335, max=42),
    "trec_test": dict(docs=500, tokens=5_264, median=10.0, sigma=0.323, max=24),
}
TOKENIZE_TOKENS_PER_S = 164_000  # one worker (README, Text pipeline); the run uses 2
EVAL_COST = 1 / 3  # a forward pass over a batch against a training step (forward + backward)

FORMULA = (
    "total_s = sum over LM stages [epochs * floor(train_tokens / (batch * bptt)) * t_lm "
    "+ floor(valid_tokens / (batch * bptt)) * t_lm * EVAL_COST] "
    "+ sum over classifier stages [epochs * sum over the epoch's batches (a + b * width) "
    "+ phases * sum over test batches (a + b * width) * EVAL_COST] "
    "+ sum over ensembles [2 * sum over test batches (a + b * width) * EVAL_COST] "
    "+ tokenize_s + compile_s; t_lm: the measured LM step (batch 64, bptt 72, vocab 60,000: an "
    "upper bound for the smaller WikiText-2 and TREC vocabularies); a, b: the classifier step "
    "time at batch 64 fitted linearly in the padded width from two widths (also used for the "
    "smaller batches of imdb100/imdb1k, an upper bound); widths: ClassifierBatches (SortedDL, "
    "padded to bptt) over lengths drawn from CORPUS; tokenize_s: all tokens once at 2 x "
    "TOKENIZE_TOKENS_PER_S; compile_s: one compilation per stage and distinct width at the "
    "measured compile time"
)


def _block(tree) -> None:
    import jax

    jax.block_until_ready(tree)


def _reproduce_configs(size: str) -> tuple[list, str]:
    """`train.reproduce.experiments(...)` without an IMDb folder (only the configs are used)."""
    from train import reproduce

    original = reproduce.imdb_path
    reproduce.imdb_path = lambda workdir: "imdb"
    try:
        return reproduce.experiments(Path("/tmp/gpu_check_reproduce"), size), size
    finally:
        reproduce.imdb_path = original


def _config_named(stages: list, name: str):
    return next(config for stage, config in stages if stage == name)


def _time_steps(step_fn, state, batches, steps: int) -> dict:
    """First call (compile + one step), then the median of `steps` steps."""
    start = time.perf_counter()
    state, metrics = step_fn(state, next(batches))
    _block(metrics)
    first = time.perf_counter() - start
    state, metrics = step_fn(state, next(batches))  # outputs placed as the step's inputs
    _block(metrics)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step_fn(state, next(batches))
        _block(metrics)
        times.append(time.perf_counter() - start)
    step_s = float(np.median(times))
    return {"first_s": first, "step_s": step_s, "compile_s": max(first - step_s, 0.0)}


def _first_phase_step(config, model, params, labels, make_train_step, **state_kwargs):
    """The first phase's real train step (as the stage builds it), on the config's mesh.

    Returns:
      `(step, state, trainable, mesh)`: the step of `make_train_step` (`make_lm_train_step` or
      `make_classifier_train_step`), its starting state (`state_kwargs` to
      `create_train_state`), the phase's trainable flags and the mesh.
    """
    from ulmfit_jax import optim
    from ulmfit_jax.core.runner import sharding
    from ulmfit_jax.core.runner.train_state import create_train_state
    from ulmfit_jax.stages.phases import make_phase_optimizer, phases

    train = config.train
    first = phases(config)[0]
    optimizer = make_phase_optimizer(config, labels, first, 1000)
    mesh = sharding.mesh_for_batch(train.batch_size, train.num_devices)
    step = make_train_step(model, optimizer, alpha=train.alpha, beta=train.beta, mesh=mesh)
    trainable = optim.trainable_groups(labels, first.trainable_groups or None)
    state = create_train_state(params, optimizer, seed=0, **state_kwargs)
    return step, state, trainable, mesh


def lm_fragment(config, vocab_size: int, steps: int) -> dict:
    """`steps` steps of the pretraining stage's real LM train step on random token ids."""
    import jax

    from ulmfit_jax.batching.lm_stream import LMStream
    from ulmfit_jax.models import awd_lstm
    from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
    from ulmfit_jax.optim import param_groups
    from ulmfit_jax.stages.lm_steps import make_lm_train_step

    t = config.train
    m = config.model  # as `lm_stage.lm_config`, whose module imports the data pipeline (TFDS)
    model = AWDLSTMConfig(
        vocab_size=vocab_size, emb_sz=m.emb_sz, n_hid=m.n_hid, n_layers=m.n_layers,
        drop_mult=m.drop_mult, compute_dtype=m.compute_dtype,
    )  # fmt: skip
    params = awd_lstm.init_lm_params(jax.random.key(0), model)
    labels = param_groups.lm_param_groups(params)
    step, state, trainable, mesh = _first_phase_step(
        config, model, params, labels, make_lm_train_step,
        lstm_state=awd_lstm.zero_state(model, t.batch_size),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    n_tokens = (steps + 3) * t.batch_size * (t.bptt + 1)
    docs = [rng.integers(2, vocab_size, n_tokens, dtype=np.int32)]
    stream = LMStream(docs, batch_size=t.batch_size, bptt=t.bptt, seed=0, shuffle=True)
    batches = (b._replace(trainable=trainable) for b in stream.epoch_batches(0))
    timing = _time_steps(step, state, batches, steps)
    return {
        "shape": dict(batch=t.batch_size, bptt=t.bptt, vocab=vocab_size, emb=model.emb_sz,
                      hid=model.n_hid, layers=model.n_layers, dtype=str(model.compute_dtype),
                      lstm_impl=model.lstm_impl),
        "devices": mesh.size,
        "steps": steps,
        **timing,
        "tokens_per_s": t.batch_size * t.bptt / timing["step_s"],
    }  # fmt: skip


def classifier_fragment(config, vocab_size: int, width: int, steps: int) -> dict:
    """`steps` steps of the IMDb classifier stage's real train step on batches of `width`."""
    import jax

    from ulmfit_jax.batching.classifier_batches import ClassifierBatches
    from ulmfit_jax.models import classifier
    from ulmfit_jax.models.classifier import ClassifierConfig
    from ulmfit_jax.optim import param_groups
    from ulmfit_jax.stages.classifier_steps import make_classifier_train_step

    t, m = config.train, config.model
    model = ClassifierConfig(
        vocab_size=vocab_size, n_class=2, emb_sz=m.emb_sz, n_hid=m.n_hid, n_layers=m.n_layers,
        lin_ftrs=tuple(m.lin_ftrs), bptt=m.bptt, max_len=m.max_len, drop_mult=m.drop_mult,
        compute_dtype=m.compute_dtype,
    )  # fmt: skip
    params = classifier.init_classifier_params(jax.random.key(0), model)
    labels = param_groups.classifier_param_groups(params)
    step, state, trainable, _ = _first_phase_step(
        config, model, params, labels, make_classifier_train_step
    )
    rng = np.random.default_rng(0)
    n_docs = (steps + 3) * t.batch_size
    # Every document pads to `width`: lengths in its last chunk of bptt.
    lengths = rng.integers(max(width - m.bptt + 1, 1), width + 1, n_docs)
    docs = [rng.integers(2, vocab_size, n, dtype=np.int32) for n in lengths]
    batches = ClassifierBatches(
        docs, rng.integers(0, 2, n_docs), batch_size=t.batch_size, seed=0, pad_multiple=m.bptt
    )
    epoch = (b._replace(trainable=trainable) for b in batches.epoch_batches(0))
    timing = _time_steps(step, state, epoch, steps)
    return {"width": width, "batch": t.batch_size, "steps": steps, **timing}


def epoch_widths(stats: dict, n_docs: int, batch: int, bptt: int, seed: int = 0, **kw) -> list:
    """Padded widths of one epoch of `ClassifierBatches` over lengths drawn from a fit."""
    from ulmfit_jax.batching.classifier_batches import ClassifierBatches

    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(np.log(stats["median"]), stats["sigma"], n_docs)
    lengths = np.clip(lengths.astype(int), 1, stats["max"])
    docs = [np.full(n, 2, np.int32) for n in lengths]
    batches = ClassifierBatches(
        docs, np.zeros(n_docs, np.int64), batch_size=batch, seed=seed, pad_multiple=bptt, **kw
    )
    order = batches.epoch_order(0)
    return [batches._width(batches._batch_rows(order, k)) for k in range(batches.num_batches())]


def estimate(stages: list, t_lm: float, a: float, b: float, compile_s: float) -> dict:
    """Seconds per stage of `train.reproduce` and the total, by `FORMULA`."""
    per_stage, widths_seen = {}, 0
    for name, c in stages:
        t, epochs = c.train, sum(p[1] for p in c.phases)
        if c.stage in ("pretrain", "finetune_lm"):
            if name.startswith("pretrain"):
                train_tokens = CORPUS["wikitext2_train"]["tokens"]
                valid_tokens = CORPUS["wikitext2_valid"]["tokens"]
            else:
                splits = ("imdb_train", "imdb_unsupervised") if "imdb" in name else ("trec_train",)
                tokens = sum(CORPUS[s]["tokens"] for s in splits)
                train_tokens = tokens * (1 - c.data.valid_pct)
                valid_tokens = tokens * c.data.valid_pct
            window = t.batch_size * t.bptt
            per_stage[name] = (
                epochs * (train_tokens // window) * t_lm
                + (valid_tokens // window) * t_lm * EVAL_COST
            )
            widths_seen += 1
        elif c.stage == "classify":
            corpus = "trec" if name.startswith("trec") else "imdb"
            train_docs = c.data.train_limit or CORPUS[f"{corpus}_train"]["docs"]
            test_docs = c.data.test_limit or CORPUS[f"{corpus}_test"]["docs"]
            bptt = c.model.bptt
            train_w = epoch_widths(CORPUS[f"{corpus}_train"], train_docs, t.batch_size, bptt)
            test_w = epoch_widths(
                CORPUS[f"{corpus}_test"], test_docs, t.batch_size, bptt, shuffle=False
            )
            train_s = sum(a + b * w for w in train_w)
            test_s = sum(a + b * w for w in test_w) * EVAL_COST
            per_stage[name] = epochs * train_s + len(c.phases) * test_s
            per_stage[f"{name} (test passes)"] = len(c.phases) * test_s
            widths_seen += len(set(train_w)) + len(set(test_w))
            if name.endswith("_ulmfit_bwd"):  # the task's ensemble: both classifiers again
                per_stage[name.replace("_ulmfit_bwd", "_ensemble")] = 2 * test_s
    tokens = sum(s["tokens"] for s in CORPUS.values())
    tokenize_s = tokens / (2 * TOKENIZE_TOKENS_PER_S)
    train_s = sum(v for k, v in per_stage.items() if "(test passes)" not in k)
    total = train_s + tokenize_s + widths_seen * compile_s
    return {
        "formula": FORMULA,
        "inputs": dict(t_lm=t_lm, a=a, b=b, compile_s=compile_s, eval_cost=EVAL_COST,
                       corpus=CORPUS, tokenize_tokens_per_s=TOKENIZE_TOKENS_PER_S),
        "per_stage_s": per_stage,
        "tokenize_s": tokenize_s,
        "compilations": widths_seen,
        "compile_s": widths_seen * compile_s,
        "total_s": total,
        "total_h": total / 3600,
    }  # fmt: skip


def run(quick: bool = False, steps: int = 10, save=None) -> dict:
    """Both fragments and the estimate. `quick`: the tiny shapes of the stage configs (CPU).
    `save(result)` is called after each fragment (a part cut off by its time keeps those)."""
    save = save or (lambda result: None)
    import jax

    stages, size = _reproduce_configs("full")
    # Copies: the quick mode shrinks them, and the estimate reads the stages as they are.
    lm_cfg = copy.deepcopy(_config_named(stages, "pretrain"))
    clas_cfg = copy.deepcopy(_config_named(stages, "imdb25k_ulmfit"))
    vocab = lm_cfg.vocab.max_vocab
    widths = (288, 864)
    if quick:  # the same code on a model a CPU steps through in seconds
        for c in (lm_cfg, clas_cfg):
            c.model.emb_sz, c.model.n_hid, c.model.n_layers = 16, 32, 1
            c.train.batch_size, c.train.bptt = 8, 8
            c.model.bptt, c.model.max_len = 8, 160
        vocab, widths, steps = 200, (16,), min(steps, 3)  # one width: the fit's slope alone
    result = {"size": "quick" if quick else size, "platform": jax.devices()[0].platform}
    result["lm"] = lm_fragment(lm_cfg, vocab, steps)
    save(result)
    result["classifier"] = []
    for width in widths:
        result["classifier"].append(classifier_fragment(clas_cfg, vocab, width, steps))
        save(result)
    points = [(c["width"], c["step_s"]) for c in result["classifier"]]
    (w0, c0), (w1, c1) = points[0], points[-1]
    b = max((c1 - c0) / (w1 - w0), 0.0) if w1 != w0 else c0 / w0
    a = max(c0 - b * w0, 0.0)
    result["classifier_fit"] = {"a_s": a, "b_s_per_token": b, "widths": list(widths)}
    compile_s = float(np.mean([c["compile_s"] for c in result["classifier"]]))
    result["estimate"] = estimate(stages, result["lm"]["step_s"], a, b, compile_s)
    lm = result["lm"]
    result["lm"]["epoch_s"] = {  # one epoch of each LM corpus at this step time
        corpus: CORPUS[corpus]["tokens"]
        // (lm["shape"]["batch"] * lm["shape"]["bptt"])
        * lm["step_s"]
        for corpus in ("wikitext2_train", "imdb_train", "imdb_unsupervised")
    }
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", default=None, help="write the result here (after each part)")
    args = parser.parse_args(argv)

    def save(result):
        if args.json:
            tmp = Path(args.json + ".tmp")
            tmp.write_text(json.dumps(result, indent=1, default=float))
            tmp.replace(args.json)

    result = run(args.quick, args.steps, save)
    save(result)
    print(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
