"""biLM pretraining (bilm-tf's recipe) on the One Billion Word Benchmark.

    # the paper's model on TFDS lm1b (prepare it first; weeks on one GPU, as bilm-tf's 3):
    python -m train.elmo --config train/configs/elmo_lm1b.py --workdir runs/elmo
    # a small biLM on the two held-out lm1b pieces in ../shared/data (2 CPU cores, ~25 min):
    python -m train.elmo --config train/configs/elmo_lm1b.py:sample --workdir runs/elmo_sample
    # seconds, for tests and CI (point data.train_files/valid_files at small text files):
    python -m train.elmo --config train/configs/elmo_lm1b.py:tiny --workdir /tmp/elmo_tiny
    # any of them in bfloat16 mixed precision (float32 parameters, optimiser state and loss):
    ... --config.model.compute_dtype=bfloat16
    # restart (bilm-tf's restart.py): adapt an exported or released biLM to your own text
    python -m train.elmo --config train/configs/elmo_lm1b.py:sample --workdir runs/adapt \
        --config.init.dir=runs/elmo_sample/export --config.train.num_steps=2000 \
        --config.data.train_files="('my_train.txt',)" --config.data.valid_files="('my_valid.txt',)"
    # (a released model: --config.init.options=OPTIONS --config.init.weights=WEIGHTS; no
    # softmax is published, so a fresh one is trained over the new text's vocabulary)

Defaults are bilm-tf's `bin/train_elmo.py`: 2 x 4096/512 LSTM with skip connections and clips
at 3, the 2048-filter character CNN with 2 highway layers, batch 128 x 20 steps, dropout 0.1,
8192 log-uniform negatives, Adagrad lr 0.2 (accumulators from 1.0), global clip norm 10,
10 epochs.

`:sample` is a 2.5M-parameter biLM (2 x 512/128 LSTM, 256-filter char CNN, 1 highway) plus a
14,058-word softmax (words seen twice in the first piece), batch 32 x 20, 2,048 negatives, 6
epochs (3,024 steps): validation perplexity 158.5 on the second piece (full softmax, forward
160.7 / backward 156.3, out-of-vocabulary targets as `<UNK>`), ~1,350 tokens/s on 2 shared CPU
cores. `:tiny` is a few-thousand-parameter model for tests.
"""

from ml_collections import ConfigDict

from train.configs.base import check_variant

_RELEASED_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))


def get_config(variant: str = "") -> ConfigDict:
    check_variant(variant, ("", "sample", "tiny"))
    c = ConfigDict()
    c.seed = 0

    c.data = ConfigDict()
    c.data.source = "tfds"  # "files" (one tokenized sentence per line) | "tfds"
    c.data.train_files = ("../shared/data/lm1b-sample/1b_benchmark.dev.tokens",)
    c.data.valid_files = ("../shared/data/lm1b-sample/1b_benchmark.test.tokens",)
    c.data.tfds_name = "lm1b"
    c.data.tfds_dir = ""
    c.data.train_split = "train"
    c.data.valid_split = "test"
    c.data.train_limit = 0  # 0: every sentence
    c.data.valid_limit = 0

    c.init = ConfigDict()  # restart: the biLM to continue (see elmo_jax.training.pretrain)
    c.init.dir = ""  # an export folder: options.json, lm_weights.hdf5 (+ softmax, vocab.txt)
    c.init.options = ""  # or the files one by one
    c.init.weights = ""
    c.init.softmax = ""  # softmax_weights.hdf5; "" in a folder without one: a fresh softmax
    c.init.vocab = ""  # the vocabulary of init.softmax's rows

    c.vocab = ConfigDict()
    c.vocab.file = ""  # a bilm-tf vocabulary file; "" builds one from the training data
    c.vocab.min_count = 3
    c.vocab.max_size = 0

    c.model = ConfigDict()
    c.model.char_embed_dim = 16
    c.model.filters = _RELEASED_FILTERS
    c.model.n_highway = 2
    c.model.max_characters_per_token = 50
    c.model.activation = "relu"
    c.model.dim = 4096
    c.model.projection_dim = 512
    c.model.n_layers = 2
    c.model.cell_clip = 3.0
    c.model.proj_clip = 3.0
    c.model.use_skip_connections = True
    c.model.compute_dtype = "float32"  # "bfloat16": mixed precision (float32 params)

    c.train = ConfigDict()
    c.train.batch_size = 128
    c.train.unroll_steps = 20
    c.train.epochs = 10.0
    c.train.num_steps = 0  # 0: epochs * (training tokens // (batch_size * unroll_steps))
    c.train.shuffle = True
    c.train.dropout = 0.1
    c.train.sample_softmax = True
    c.train.n_negative_samples = 8192
    c.train.shared_negatives = False  # bilm-tf draws separately for each direction
    c.train.remove_accidental_hits = True
    c.train.checkpoint_every = 1250  # bilm-tf saves every 1250 batches
    c.train.log_every = 100

    c.optim = ConfigDict()
    c.optim.learning_rate = 0.2
    c.optim.initial_accumulator_value = 1.0
    c.optim.clip_norm = 10.0

    c.eval = ConfigDict()
    c.eval.batch_size = 128
    c.eval.unroll_steps = 20

    if variant == "sample":
        c.data.source = "files"
        c.vocab.min_count = 2
        c.model.char_embed_dim = 16
        c.model.filters = ((1, 16), (2, 16), (3, 32), (4, 64), (5, 128))
        c.model.n_highway = 1
        c.model.dim = 512
        c.model.projection_dim = 128
        c.model.n_layers = 2
        c.train.batch_size = 32
        c.train.n_negative_samples = 2048
        c.train.epochs = 6.0
        c.train.checkpoint_every = 200
        c.train.log_every = 20
        c.eval.batch_size = 32
    elif variant == "tiny":
        c.data.source = "files"
        c.vocab.min_count = 1
        c.model.char_embed_dim = 4
        c.model.filters = ((1, 4), (2, 8), (3, 8))
        c.model.n_highway = 1
        c.model.dim = 24
        c.model.projection_dim = 8
        c.train.batch_size = 4
        c.train.unroll_steps = 8
        c.train.n_negative_samples = 8
        c.train.num_steps = 6
        c.train.checkpoint_every = 3
        c.train.log_every = 2
        c.eval.batch_size = 2
        c.eval.unroll_steps = 8
    return c
