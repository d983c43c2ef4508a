"""How good are a language model's frozen features for a classification cell? A linear probe.

For one classifier cell of a `train.reproduce` workdir (default `imdb1k_ulmfit`: 1,000 IMDb
labels, seed 0), every train and validation document is run through each named language
model's encoder without dropout (BPT3C over the whole review, as the classifier reads it), the
last layer's outputs are concat-pooled (`[last, max, mean]`, the classifier head's input), and a
logistic regression on those features, `C` chosen on the validation split, gives a validation
accuracy. Beside it: the same probe on the mean of the LM's input embeddings (a bag of
embeddings, no LSTM), and TF-IDF + logistic regression on the same documents. Test is not
touched. The probe isolates the encoder: if its features trail TF-IDF, no fine-tuning recipe
on 1,000 labels is likely to close the gap, and the lever is the language model.

    PYTHONPATH=. python scripts/experiments/linear_probe.py --workdir runs/whole \
        --cell imdb1k_ulmfit --lm pretrain --lm lm_imdb

Prints a Markdown table (needs scikit-learn).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from train import reproduce
from ulmfit_jax.batching import corpus
from ulmfit_jax.core.data.classification import load_classification
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.stages.baselines import tfidf_logistic
from ulmfit_jax.stages.classifier_stage import model_config
from ulmfit_jax.stages.lm_stage import cache_dir
from ulmfit_jax.weights.export import load_lm

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
BATCH = 32


def encode(params, model: ClassifierConfig, docs: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """(concat-pooled features float[n, 3 * emb], mean input embedding float[n, emb]) per doc,
    in input order; batches of similar length, each padded to a multiple of bptt."""

    @jax.jit
    def features(encoder, tokens, lengths):
        outputs, keep = classifier.bpt3c_encode(encoder, model, tokens, lengths, None)
        pooled = classifier.masked_concat_pool(outputs, keep, lengths)
        embedded = awd_lstm.embed_tokens(encoder["embedding"], tokens, model.encoder_config, None)
        real = (jnp.arange(tokens.shape[1])[None, :] < lengths[:, None])[..., None]
        bag = jnp.sum(jnp.where(real, embedded, 0.0), axis=1) / lengths[:, None]
        return pooled, bag

    order = np.argsort([len(d) for d in docs])
    pooled = np.zeros((len(docs), 3 * model.emb_sz), np.float32)
    bags = np.zeros((len(docs), model.emb_sz), np.float32)
    for start in range(0, len(docs), BATCH):
        rows = order[start : start + BATCH]
        tokens, lengths = classifier.pad_documents([docs[i] for i in rows], model)
        # Few distinct shapes: round the padded length up to a power-of-two number of chunks.
        chunks = tokens.shape[1] // model.bptt
        padded = np.full((BATCH, model.bptt * (1 << (chunks - 1).bit_length())), 1, np.int32)
        padded[: len(rows), : tokens.shape[1]] = tokens
        full_lengths = np.ones(BATCH, np.int32)
        full_lengths[: len(rows)] = lengths
        p, b = features(params["encoder"], jnp.asarray(padded), jnp.asarray(full_lengths))
        pooled[rows], bags[rows] = np.asarray(p)[: len(rows)], np.asarray(b)[: len(rows)]
    return pooled, bags


def probe(x_train, y_train, x_valid, y_valid) -> tuple[float, float]:
    """(best validation accuracy, its C) of standardised features + logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    x_train, x_valid = scaler.transform(x_train), scaler.transform(x_valid)
    best = (0.0, None)
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train)
        accuracy = float(np.mean(model.predict(x_valid) == y_valid))
        best = max(best, (accuracy, c), key=lambda t: t[0])
    return best


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--size", default="whole")
    parser.add_argument("--cell", default="imdb1k_ulmfit")
    parser.add_argument("--lm", action="append", help="LM stage folder(s) in the workdir")
    args = parser.parse_args(argv)
    config = dict(reproduce.experiments(args.workdir, args.size))[args.cell]
    data = load_classification(DataSpec.from_config(config.data), seed=config.seed)
    y_train, y_valid = data.targets(data.train), data.targets(data.valid)
    tfidf = tfidf_logistic(data.train.texts, y_train, data.valid.texts, y_valid)
    rows = [
        f"| features ({args.cell}: {len(y_train):,} train / {len(y_valid):,} validation docs) "
        "| validation accuracy | C |",
        "| --- | --- | --- |",
        f"| TF-IDF word 1-2 grams | {tfidf['valid_accuracy']:.4f} | {tfidf['C']:g} |",
    ]
    tokenize = lambda texts: corpus.tokenize_texts(texts, cache_dir=cache_dir(config))  # noqa: E731
    train_docs, valid_docs = tokenize(data.train.texts), tokenize(data.valid.texts)
    for name in args.lm or ["pretrain", "lm_imdb"]:
        start = time.perf_counter()
        params, lm_config, vocab, _ = load_lm(args.workdir / name)
        model = model_config(config, lm_config.vocab_size, data.encoder.n_outputs, lm_config)
        train_ids = corpus.numericalize(train_docs, vocab)
        valid_ids = corpus.numericalize(valid_docs, vocab)
        unknown = float(np.mean(np.concatenate(train_ids) == 0))
        (p_train, b_train), (p_valid, b_valid) = (
            encode(params, model, train_ids),
            encode(params, model, valid_ids),
        )
        pooled_acc, pooled_c = probe(p_train, y_train, p_valid, y_valid)
        bag_acc, bag_c = probe(b_train, y_train, b_valid, y_valid)
        seconds = time.perf_counter() - start
        rows.append(
            f"| {name}: concat pool of the LSTM outputs ({unknown:.1%} unknown tokens, "
            f"{seconds:.0f} s) | {pooled_acc:.4f} | {pooled_c:g} |"
        )
        rows.append(f"| {name}: mean input embedding | {bag_acc:.4f} | {bag_c:g} |")
    table = "\n".join(rows)
    print(table)
    return table


if __name__ == "__main__":
    main()
