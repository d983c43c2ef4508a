"""The Stanford Sentiment Treebank (SST) from its PTB-format trees: sentences and root labels.

`trainDevTestTrees_PTB.zip` (Socher et al., 2013) holds `trees/train.txt`, `trees/dev.txt` and
`trees/test.txt`, one binarised parse per line, every node labelled 0-4:

    (3 (2 It) (4 (4 (2 's) (4 (3 (2 a) (4 (3 lovely) (2 film))) ...)) (2 .)))

A sentence is its leaves joined by single spaces, a label is the root's. Counts:

    split   fine-grained (sst, 5 classes)   binary (sst2, label 2 dropped)
    train   8,544                           6,920
    dev     1,101                             872
    test    2,210                           1,821

Label names: sst "very negative", "negative", "neutral", "positive", "very positive" (0-4);
sst2 "negative" (0, 1), "positive" (3, 4). Only whole sentences are read (AllenNLP's reader
with `use_subtrees=False`, the ELMo paper's SST-5 setup). The PTB escapes `-LRB-`, `-RRB-`,
`-LCB-`, `-RCB-` and `\\/` become `(`, `)`, `{`, `}` and `/` (`unescape=False` keeps them, as
nltk's `Tree.leaves()` does).

Example:

    for text, label in read_sst("trainDevTestTrees_PTB.zip", "dev", binary=True): ...

As the reader of the local formats "sst" and "sst2" (`read(spec, split)`, see
`ulmfit_jax.core.data.readers`), `data.path` is the zip, a folder holding it, or a folder of the
three tree files (or with a `trees/` folder of them), read in place; the splits are "train",
"validation" (dev.txt) and "test".
"""

from __future__ import annotations

import os
import pathlib
import re
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ulmfit_jax.core.data.decode import Decoder
from ulmfit_jax.core.data.documents import Document, Documents

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec

SST_FORMATS = ("sst", "sst2")
SST5_NAMES = ("very negative", "negative", "neutral", "positive", "very positive")
SST2_NAMES = ("negative", "positive")
# Split name -> tree file (the local format's splits; "dev" is accepted by `read_sst` too).
SPLIT_FILES = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}
EXPECTED_COUNTS = {
    "sst": {"train": 8544, "validation": 1101, "test": 2210},
    "sst2": {"train": 6920, "validation": 872, "test": 1821},
}

_LEAF = re.compile(r"\(([0-4]) ([^()\s]+)\)")
_ROOT = re.compile(r"^\(([0-4])\s")
_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LCB-": "{", "-RCB-": "}"}


def parse_tree(line: str, *, unescape: bool = True, where: str = "tree") -> tuple[str, int]:
    """The sentence (leaves joined by spaces) and the root label (0-4) of one PTB tree.

    Raises:
      ValueError: not a labelled tree (the message names `where`).
    """
    line = line.strip()
    root = _ROOT.match(line)
    leaves = _LEAF.findall(line)
    if root is None or not leaves or line.count("(") != line.count(")"):
        raise ValueError(f"{where}: not an SST tree '(LABEL ...)': {line[:60]!r}")
    words = [w for _, w in leaves]
    if unescape:
        words = [_ESCAPES.get(w, w).replace("\\/", "/") for w in words]
    return " ".join(words), int(root.group(1))


def label_name(label: int, binary: bool) -> str | None:
    """The class name of a 0-4 label (None: dropped from the binary task)."""
    if not binary:
        return SST5_NAMES[label]
    return None if label == 2 else SST2_NAMES[int(label > 2)]


def _tree_file(split: str) -> str:
    name = SPLIT_FILES.get(split, f"{split}.txt")
    if name not in SPLIT_FILES.values():
        raise ValueError(f"unknown SST split {split!r}: expected train, dev/validation or test")
    return name


def _zip_member(archive: zipfile.ZipFile, name: str) -> str:
    members = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == name]
    if len(members) != 1:
        raise ValueError(f"{archive.filename}: expected one {name} in the archive, not {members}")
    return members[0]


def iter_tree_lines(path: str | os.PathLike, split: str) -> Iterator[tuple[str, str]]:
    """`(location, line)` of one split's tree file: `path` is the zip, or a folder (module
    docstring)."""
    name = _tree_file(split)
    path = trees_source(pathlib.Path(path).expanduser())
    if path.is_dir():  # the folder of the tree files (trees_source checked)
        file = path / name
        raw, location = file.read_bytes(), str(file)
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            member = _zip_member(archive, name)
            raw = archive.read(member)
        location = f"{path}:{member}"
    else:
        raise FileNotFoundError(f"no SST trees at {path}: expected the PTB-trees zip or folder")
    text = Decoder(location, "strict")(raw)
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield f"{location}:{number}", line


def read_sst(
    path: str | os.PathLike, split: str, *, binary: bool = False, unescape: bool = True
) -> Iterator[tuple[str, str]]:
    """`(sentence, label name)` of every sentence of a split, in file order.

    Args:
      path: the zip, a folder holding it, or a folder of the tree files (module docstring).
      split: "train", "dev" (or "validation") or "test".
      binary: SST-2: neutral (2) dropped, 0-1 "negative", 3-4 "positive".
      unescape: undo the PTB escapes (module docstring).
    """
    for where, line in iter_tree_lines(path, split):
        text, label = parse_tree(line, unescape=unescape, where=where)
        name = label_name(label, binary)
        if name is not None:
            yield text, name


def find_tree_folder(path: pathlib.Path) -> pathlib.Path:
    """The folder holding train.txt/dev.txt/test.txt: `path` or `path/trees`."""
    for folder in (path, path / "trees"):
        if (folder / "train.txt").is_file() or (folder / "test.txt").is_file():
            return folder
    raise FileNotFoundError(
        f"no SST trees at {path}: expected trainDevTestTrees_PTB.zip, or train.txt, dev.txt, "
        "test.txt (or a trees/ folder of them)"
    )


def trees_source(path: pathlib.Path) -> pathlib.Path:
    """Where the trees are: `path` itself (the zip, or a folder of the tree files), or the only
    `*.zip` in a folder that holds no tree files (`../shared/data/sst`)."""
    if path.is_dir():
        try:
            return find_tree_folder(path)
        except FileNotFoundError:
            zips = sorted(path.glob("*.zip"))
            if len(zips) != 1:
                raise
            return zips[0]
    return path


def read(spec: DataSpec, split: str) -> Documents:
    """The sentences of one split (`data.format` "sst": 5 classes, "sst2": 2), labelled by
    name, class order `SST5_NAMES` / `SST2_NAMES`."""
    binary = spec.format == "sst2"
    documents = []
    for where, line in iter_tree_lines(spec.path, split):
        text, label = parse_tree(line, where=where)
        name = label_name(label, binary)
        if name is not None:
            documents.append(Document((text,), name, where))
    names = SST2_NAMES if binary else SST5_NAMES
    return Documents(documents, f"{spec.description}[{split}]", names)
