#!/bin/bash
# TREC-6 from scratch at the small size, validation 10% of train: lr_find, then training, then evaluate.
set -e
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
COMMON="--config=train/configs/classify_trec.py --config.init.workdir= --config.data.valid_pct=0.1 --config.model.emb_sz=128 --config.model.n_hid=384 --config.model.bptt=16 --config.model.max_len=320 --config.train.batch_size=32 --config.cache_dir=${RUNS:-runs/trec_valid}/cache --config.tokenizer_workers=1"
export ULMFIT_CACHE=${RUNS:-runs/trec_valid}/cache
$PY -m train.ulmfit $COMMON --workdir ${RUNS:-runs/trec_valid}/trec_lrfind --config.lr_find=True --config.phases="((0, 6, 1e-2),)"
LR=$(python3 -c "import json; print(json.load(open('${RUNS:-runs/trec_valid}/trec_lrfind/lr_find.json'))['suggestions']['valley'])")
echo "lr_find valley: $LR"
$PY -m train.ulmfit $COMMON --workdir ${RUNS:-runs/trec_valid}/trec --config.phases="((0, 6, $LR),)" --config.train.patience=2
$PY -m train.ulmfit --config=train/configs/classify_trec.py --workdir ${RUNS:-runs/trec_valid}/trec_eval --config.stage=evaluate --config.eval.workdirs="('${RUNS:-runs/trec_valid}/trec',)" --config.cache_dir=${RUNS:-runs/trec_valid}/cache --config.tokenizer_workers=1
