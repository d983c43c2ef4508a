"""A small corpus of real English that ships with Python: the standard library's docstrings.

The demo falls back to it when neither IMDb nor WikiText is on the machine, so that the main
command always runs offline. Documents are the docstrings of public modules, classes and
functions; the classification task is which family a document's module belongs to:

    0 "text"     string, re, textwrap, difflib, unicodedata, codecs, html, csv, json, ...
    1 "numbers"  math, cmath, decimal, fractions, statistics, random, numbers, ...
    2 "system"   os, io, shutil, pathlib, subprocess, signal, socket, threading, ...

Which docstrings exist depends on the Python version, so the corpus is assembled at run time by
this module's code (nothing is copied into the repository).
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np

FAMILIES = {
    "text": [
        "string",
        "re",
        "textwrap",
        "difflib",
        "unicodedata",
        "codecs",
        "html",
        "html.parser",
        "csv",
        "json",
        "email.message",
        "email.utils",
        "gettext",
        "locale",
        "pprint",
        "shlex",
    ],
    "numbers": [
        "math",
        "cmath",
        "decimal",
        "fractions",
        "statistics",
        "random",
        "numbers",
        "operator",
        "heapq",
        "bisect",
        "array",
        "struct",
        "itertools",
        "functools",
    ],
    "system": [
        "os",
        "io",
        "shutil",
        "pathlib",
        "subprocess",
        "signal",
        "socket",
        "threading",
        "multiprocessing",
        "tempfile",
        "glob",
        "select",
        "selectors",
        "asyncio",
        "time",
        "logging",
        "zipfile",
        "tarfile",
    ],
}
LABEL_NAMES = list(FAMILIES)
MIN_WORDS = 12


def _docstrings(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    docs = [inspect.getdoc(module) or ""]
    for name, member in sorted(vars(module).items()):
        if name.startswith("_") or getattr(member, "__module__", module_name) != module_name:
            continue
        if inspect.isclass(member) or inspect.isfunction(member) or inspect.isbuiltin(member):
            docs.append(inspect.getdoc(member) or "")
            if inspect.isclass(member):
                for attr, value in sorted(vars(member).items()):
                    if not attr.startswith("_") and callable(value):
                        docs.append(inspect.getdoc(value) or "")
    return [d for d in dict.fromkeys(docs) if len(d.split()) >= MIN_WORDS]


def labelled_documents() -> tuple[list[str], np.ndarray]:
    """Every docstring of the families' modules with its family id, deduplicated."""
    texts, labels, seen = [], [], set()
    for label, modules in enumerate(FAMILIES.values()):
        for module in modules:
            for doc in _docstrings(module):
                if doc not in seen:
                    seen.add(doc)
                    texts.append(doc)
                    labels.append(label)
    return texts, np.array(labels, np.int32)


def split(seed: int = 0, test_fraction: float = 0.3):
    """`(train_texts, train_labels, test_texts, test_labels)`, a seeded random split."""
    texts, labels = labelled_documents()
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = int(len(texts) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (
        [texts[i] for i in train],
        labels[train],
        [texts[i] for i in test],
        labels[test],
    )


GENERAL_MODULES = [
    "collections",
    "dataclasses",
    "enum",
    "typing",
    "argparse",
    "configparser",
    "datetime",
    "calendar",
    "contextlib",
    "copy",
    "pickle",
    "sqlite3",
    "urllib.parse",
    "http.client",
    "xml.etree.ElementTree",
    "unittest",
    "doctest",
    "inspect",
    "ast",
    "dis",
    "traceback",
    "warnings",
    "weakref",
    "abc",
    "hashlib",
    "hmac",
    "secrets",
    "base64",
    "uuid",
    "queue",
    "sched",
    "zlib",
    "gzip",
    "bz2",
    "lzma",
    "sys",
    "platform",
    "sysconfig",
    "importlib",
]


def general_documents() -> list[str]:
    """Docstrings of other standard-library modules: the fallback pretraining corpus."""
    texts = []
    for module in GENERAL_MODULES:
        texts.extend(_docstrings(module))
    return list(dict.fromkeys(texts))


def write_jsonl(folder) -> None:
    """Write `general.jsonl` (unlabelled) and `train.jsonl`/`test.jsonl` (text, label name)."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "general.jsonl", "w", encoding="utf-8") as f:
        for text in general_documents():
            f.write(json.dumps({"text": text}) + "\n")
    train_texts, train_labels, test_texts, test_labels = split()
    for name, texts, labels in (
        ("train", train_texts, train_labels),
        ("test", test_texts, test_labels),
    ):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for text, label in zip(texts, labels, strict=True):
                f.write(json.dumps({"text": text, "label": LABEL_NAMES[label]}) + "\n")
