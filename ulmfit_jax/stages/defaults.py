"""Defaults shared by every ULMFiT stage config (fastai's and the paper's values), for the config
files in train/configs/ and the Python API (`ulmfit_jax.api`)."""

from ml_collections import ConfigDict

from ulmfit_jax.core.data.spec import data_config

VARIANTS = ("", "tiny")


def check_variant(variant: str, known: tuple[str, ...] = VARIANTS) -> str:
    """`variant`, or a ValueError listing the known ones (a misspelt `:tinyy` must not run the
    full-size config)."""
    if variant not in known:
        names = ", ".join(repr(v) for v in known)
        raise ValueError(f"unknown config variant {variant!r}: expected one of {names}")
    return variant


def base_config(stage: str) -> ConfigDict:
    c = ConfigDict()
    c.stage = stage
    c.seed = 0
    c.backward = False
    c.cache_dir = ""  # tokenized-corpus cache; "" means ~/.cache/ulmfit_jax
    c.tokenizer_workers = 2

    # Generated from `DataSpec`, whose docstring documents each key, so defaults cannot drift.
    c.data = data_config()

    c.vocab = ConfigDict(dict(max_vocab=60000, min_freq=3))

    c.model = ConfigDict()
    c.model.emb_sz = 400
    c.model.n_hid = 1152
    c.model.n_layers = 3
    c.model.drop_mult = 1.0
    c.model.bptt = 72  # classifier BPT3C chunk
    c.model.max_len = 72 * 20
    c.model.lin_ftrs = (50,)
    c.model.compute_dtype = "float32"  # "bfloat16": mixed precision (float32 params)
    c.model.y_range = ()  # regression: (low, high) squashes the output (fastai's SigmoidRange)

    c.train = ConfigDict()
    c.train.batch_size = 64
    c.train.bptt = 72
    c.train.variable_bptt = False
    c.train.alpha = 2.0  # AR
    c.train.beta = 1.0  # TAR
    c.train.checkpoint_every = 500
    c.train.log_every = 50
    c.train.max_tokens = 0  # classifier: keep each document's first N tokens (0 = all)
    # Devices of the data-parallel mesh, over all hosts. 0: every device the batch splits over
    # (all of them when batch_size is a multiple of their number).
    c.train.num_devices = 0
    c.train.checkpoint_dir = ""  # "" = WORKDIR/checkpoints; several hosts: gs://bucket/...
    # The best epoch by this validation metric is exported ("" = accuracy for classifiers,
    # loss for LMs and regression); patience > 0 stops after that many epochs without a gain.
    c.train.monitor = ""
    c.train.patience = 0
    c.train.class_weights = ""  # "" | "balanced" | "w0,w1,..." (single-label classifiers)
    c.train.accumulate = 1  # batches per optimiser update (gradient accumulation)

    c.optim = ConfigDict()
    c.optim.schedule = "stlr"  # "stlr" (the paper) | "one_cycle" (fastai) | "constant"
    c.optim.lr_mult = 2.6
    c.optim.betas = (0.7, 0.99)
    c.optim.eps = 1e-5
    c.optim.weight_decay = 0.01
    c.optim.clip = 0.0  # global-norm clipping; 0 is off
    c.optim.moms = (0.8, 0.7, 0.8)  # 1cycle's beta1 cycle

    # (trainable groups from the top (0 = all), epochs, lr) per phase.
    c.phases = ((0, 1, 1e-3),)

    # finetune_lm starts from one of: workdir (an LM stage's or `python -m ulmfit_jax convert`'s
    # export), fastai_pth (+ fastai_itos; paths or URLs) or pretrained (a registered model name,
    # e.g. "wt103_fwd"; see ulmfit_jax.weights.pretrained). classify reads only workdir.
    # lr_find=True runs fastai's learning-rate finder for phase `lr_finder.phase` instead of
    # training, writing WORKDIR/lr_find.json and lr_find.png.
    c.lr_find = False
    # overwrite=True lets a stage replace a WORKDIR/export it did not write (another stage's
    # export, e.g. a converted model, or a user's folder); its own it always replaces.
    c.overwrite = False
    c.lr_finder = ConfigDict(dict(start_lr=1e-7, end_lr=10.0, num_it=100, phase=0))

    c.init = ConfigDict(dict(workdir="", fastai_pth="", fastai_itos="", pretrained=""))
    # test_at_end: the classify stage scores its best epoch on the test split once, reported
    # apart; otherwise only the evaluate stage reads the test split. top_losses: rows written.
    c.eval = ConfigDict(dict(workdirs=(), test_at_end=False, top_losses=50))
    c.predict = ConfigDict(dict(input="", output="", text_field="text", text_fields=()))
    return c


def tiny(c: ConfigDict) -> ConfigDict:
    """Shrink a config to seconds on a CPU: tiny model, few documents, one short epoch."""
    c.model.emb_sz, c.model.n_hid, c.model.n_layers = 16, 24, 2
    c.model.bptt, c.model.max_len, c.model.lin_ftrs = 16, 48, (8,)
    c.vocab.max_vocab, c.vocab.min_freq = 400, 1
    c.train.batch_size, c.train.bptt = 4, 16
    c.train.checkpoint_every, c.train.log_every = 5, 5
    c.train.max_tokens = 48  # few padded widths: few compilations
    c.data.train_limit, c.data.valid_limit, c.data.test_limit = 40, 10, 20
    c.tokenizer_workers = 1
    return c


def classifier_recipe(c: ConfigDict, small: bool = False) -> ConfigDict:
    """fastai's IMDb classifier schedule: freeze_to(-1), (-2), (-3), unfreeze(), drop_mult 0.5."""
    c.model.drop_mult = 0.5
    lr = 2e-2
    c.phases = ((1, 1, lr), (2, 1, lr / 2), (3, 1, lr / 4), (0, 2, lr / 20))
    if small:
        tiny(c)
        c.phases = ((1, 1, lr), (0, 1, lr / 20))
    return c


def lm_recipe(c: ConfigDict, small: bool = False) -> ConfigDict:
    """fastai's LM fine-tuning: one epoch of the top group, then all groups; drop_mult 0.3."""
    c.model.drop_mult = 0.3
    c.phases = ((1, 1, 2e-2), (0, 10, 2e-3))
    if small:
        tiny(c)
        c.phases = ((1, 1, 2e-2), (0, 1, 2e-3))
    return c
