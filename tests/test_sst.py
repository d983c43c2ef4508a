"""The SST reader: sentences from PTB trees' leaves, root labels, SST-5 and SST-2, zip or
folder, as a local format; exact counts on the real file when it is there."""

import zipfile

import pytest

from ulmfit_jax.core.data.readers import open_split
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.data.sst import EXPECTED_COUNTS, parse_tree, read_sst

TREES = {
    "train": [
        "(3 (2 It) (4 (4 (2 's) (4 (3 (2 a) (4 lovely)))) (2 .)))",
        "(1 (2 -LRB-) (1 (2 co-writer\\/director) (1 (2 -RRB-) (1 dull))))",
        "(2 (2 Just) (2 okay))",
        "(0 (0 Awful) (2 .))",
        "(4 (4 Brilliant) (2 !))",
    ],
    "dev": ["(2 (2 Meh) (2 .))", "(3 (3 Nice) (2 .))"],
    "test": ["(1 (1 Weak) (2 .))"],
}


def write_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("trees/", "")
        for split, lines in TREES.items():
            z.writestr(f"trees/{split}.txt", "\n".join(lines) + "\n")
    return path


def test_trees_give_leaves_and_root_labels(tmp_path):
    assert parse_tree(TREES["train"][0]) == ("It 's a lovely .", 3)
    assert parse_tree(TREES["train"][1]) == ("( co-writer/director ) dull", 1)
    assert (
        parse_tree(TREES["train"][1], unescape=False)[0] == "-LRB- co-writer\\/director -RRB- dull"
    )
    with pytest.raises(ValueError, match="x.txt:3: not an SST tree"):
        parse_tree("(3 unbalanced (2 a)", where="x.txt:3")
    archive = write_zip(tmp_path / "trees.zip")
    fine = list(read_sst(archive, "train"))
    assert fine == [
        ("It 's a lovely .", "positive"),
        ("( co-writer/director ) dull", "negative"),
        ("Just okay", "neutral"),
        ("Awful .", "very negative"),
        ("Brilliant !", "very positive"),
    ]
    binary = list(read_sst(archive, "train", binary=True))
    assert [label for _, label in binary] == ["positive", "negative", "negative", "positive"]
    assert list(read_sst(archive, "validation")) == list(read_sst(archive, "dev"))
    # A folder of the extracted files reads the same.
    zipfile.ZipFile(archive).extractall(tmp_path / "unzipped")
    assert list(read_sst(tmp_path / "unzipped", "train")) == fine
    with pytest.raises(ValueError, match="unknown SST split"):
        list(read_sst(archive, "unsup"))


@pytest.mark.parametrize("fmt", ["sst", "sst2"])
def test_local_format(tmp_path, fmt):
    folder = tmp_path / "sst"
    folder.mkdir()
    write_zip(folder / "trainDevTestTrees_PTB.zip")
    spec = DataSpec(source="local", path=str(folder), format=fmt)
    documents = open_split(spec, "train")
    names = documents.label_names
    want = list(read_sst(folder / "trainDevTestTrees_PTB.zip", "train", binary=fmt == "sst2"))
    assert [(d.text, d.label) for d in documents] == want
    assert len(names) == (2 if fmt == "sst2" else 5)
    dev = open_split(spec, "validation")
    assert len(dev) == (1 if fmt == "sst2" else 2)


def test_read_sst_takes_the_folder_holding_the_zip(tmp_path):
    """As the local format does: `../shared/data/sst` is such a folder."""
    write_zip(tmp_path / "trainDevTestTrees_PTB.zip")
    want = list(read_sst(tmp_path / "trainDevTestTrees_PTB.zip", "dev"))
    assert want and list(read_sst(tmp_path, "dev")) == want
    (tmp_path / "other.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no SST trees"):
        list(read_sst(tmp_path, "dev"))


def test_the_real_treebank_counts(shared_dir):
    archive = shared_dir / "data" / "sst" / "trainDevTestTrees_PTB.zip"
    if not archive.is_file():
        pytest.skip(f"SST trees not found at {archive}")
    for fmt, counts in EXPECTED_COUNTS.items():
        for split, count in counts.items():
            assert sum(1 for _ in read_sst(archive, split, binary=fmt == "sst2")) == count
    assert next(read_sst(archive, "dev")) == (
        "It 's a lovely film with lovely performances by Buy and Accorsi .",
        "positive",
    )
