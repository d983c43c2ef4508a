"""Adapt a biLM to IMDb reviews (bilm-tf's `restart.py`) and measure perplexity before and after.

    PYTHONPATH=. python scripts/experiments/elmo_imdb_adapt.py \
        --bilm runs/elmo_sample/export --workdir runs/elmo_imdb

Steps, each skipped when its output exists (rerun the command to resume a cut-off run):
1. Sentence files from the aclImdb tree (`../shared/data/imdb` or `$ULMFIT_IMDB`): the first
   `--train-reviews` of `train/unsup` (unlabelled) for training and a seeded `--valid-reviews`
   of `test/` for validation, `<br />` removed, split into sentences and tokenized with spaCy's
   rule-based English pipeline (`blank("en")` + `sentencizer`, no model download), one
   whitespace-joined sentence per line: the layout of lm1b, which the biLM was trained on.
2. `train.elmo`'s restart (`init.dir=--bilm`): the biLM, its softmax and its vocabulary are
   restored (IMDb words outside it are `<UNK>` targets, as in bilm-tf), the restored model is
   scored on the IMDb validation sentences (`init_valid/perplexity`), then trained
   `--steps` steps on the IMDb sentences and exported in the released layout.
3. Both biLMs (before and after) scored with the full softmax on the IMDb validation
   sentences and on `--general-valid` (lm1b text, the original domain: what adapting costs
   there). Written to `WORKDIR/summary.json` and printed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from ulmfit_jax.core.data.imdb import find_imdb
from ulmfit_jax.core.paths import SHARED_DATA

BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def review_sentences(texts, nlp) -> list[str]:
    """Tokenized sentences, tokens joined by single spaces, of raw IMDb review texts."""
    out = []
    for doc in nlp.pipe((BREAK.sub(" ", t) for t in texts), batch_size=256):
        for sentence in doc.sents:
            tokens = [t.text for t in sentence if not t.is_space]
            if tokens:
                out.append(" ".join(tokens))
    return out


def write_sentence_files(imdb: Path, folder: Path, n_train: int, n_valid: int, seed: int):
    """`folder/{train,valid}.txt` from `imdb` (an aclImdb folder); returns their paths."""
    train, valid = folder / "train.txt", folder / "valid.txt"
    if train.exists() and valid.exists():
        return train, valid
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    unsup = sorted((imdb / "train" / "unsup").glob("*.txt"))[:n_train]
    test = sorted((imdb / "test" / "pos").glob("*.txt")) + sorted(
        (imdb / "test" / "neg").glob("*.txt")
    )
    test = random.Random(seed).sample(test, n_valid)
    folder.mkdir(parents=True, exist_ok=True)
    for path, files in ((valid, test), (train, unsup)):
        lines = review_sentences((f.read_text(encoding="utf-8") for f in files), nlp)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)  # atomic: a cut-off run never leaves half a file
    return train, valid


def score(export: Path, sentence_file: Path) -> dict[str, float]:
    """Full-softmax perplexity of the exported biLM (with its softmax) on a sentence file."""
    from elmo_jax.model.config import read_options
    from elmo_jax.training import steps
    from elmo_jax.training.data import (
        BidirectionalBatches,
        Vocabulary,
        encode_corpus,
        read_sentence_files,
    )
    from elmo_jax.weights.allennlp import load_allennlp

    model = read_options(export / steps.OPTIONS_FILE)
    bilm, _ = load_allennlp(export / steps.OPTIONS_FILE, export / steps.WEIGHTS_FILE)
    params = {"bilm": bilm, "softmax": steps.load_softmax(export / steps.SOFTMAX_FILE)}
    vocab = Vocabulary.from_file(export / steps.VOCAB_FILE)
    corpus = encode_corpus(
        read_sentence_files([sentence_file]), vocab, model.max_characters_per_token
    )
    batches = BidirectionalBatches(
        corpus, batch_size=32, unroll_steps=20, shuffle=False, repeat=False
    )
    metrics = steps.evaluate(params, model, batches)
    return {k: float(v) for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bilm", required=True, help="an exported biLM folder (with softmax)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--imdb", default=None, help="aclImdb folder or tarball")
    parser.add_argument("--train-reviews", type=int, default=5000)
    parser.add_argument("--valid-reviews", type=int, default=500)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--general-valid",
        type=Path,
        default=SHARED_DATA / "lm1b-sample" / "1b_benchmark.test.tokens",
        help="text of the original domain, scored before and after",
    )
    args = parser.parse_args()
    bilm = Path(args.bilm)
    if not (bilm / "softmax_weights.hdf5").exists():
        parser.error(f"{bilm} has no softmax_weights.hdf5: perplexity needs the biLM's softmax")
    imdb = find_imdb(args.imdb, cache_dir=args.workdir / "cache")
    if imdb is None:
        parser.error("IMDb not found: pass --imdb or set $ULMFIT_IMDB")
    train_file, valid_file = write_sentence_files(
        imdb, args.workdir / "text", args.train_reviews, args.valid_reviews, args.seed
    )

    from train import elmo
    from train.configs import elmo_lm1b

    c = elmo_lm1b.get_config("sample")
    c.seed = args.seed
    c.data.source = "files"
    c.data.train_files, c.data.valid_files = (str(train_file),), (str(valid_file),)
    c.init.dir = str(bilm)
    c.train.num_steps = args.steps
    run_dir = args.workdir / "adapt"
    export = run_dir / "export"
    if not (export / "lm_weights.hdf5").exists():
        elmo.run(c, str(run_dir), resume=(run_dir / "checkpoints").exists())

    summary = {"train_reviews": args.train_reviews, "valid_reviews": args.valid_reviews}
    summary["steps"] = args.steps
    for name, folder in (("before", bilm), ("after", export)):
        summary[name] = {"imdb": score(folder, valid_file)}
        if args.general_valid.exists():
            summary[name]["general"] = score(folder, args.general_valid)
    (args.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    for name in ("before", "after"):
        line = f"{name:>6}: IMDb perplexity {summary[name]['imdb']['perplexity']:.1f}"
        if "general" in summary[name]:
            line += f", lm1b perplexity {summary[name]['general']['perplexity']:.1f}"
        print(line)


if __name__ == "__main__":
    main()
