"""`elmo-jax embed` files read with AllenNLP's documented code, and the `ElmoEmbedder` API."""

import json

import h5py
import numpy as np
import pytest
from elmo_fixtures import tiny_config

import elmo_jax
from elmo_jax.__main__ import main
from elmo_jax.weights.allennlp import write_random_weights

LINES = ["The cat sat .", "A  dog   barked", "", "The cat sat .", "Ünïcode wörds here"]


@pytest.fixture(scope="module")
def bilm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bilm")
    config = tiny_config()
    write_random_weights(config, folder / "lm_weights.hdf5", folder / "options.json", seed=4)
    model = [
        "--options",
        str(folder / "options.json"),
        "--weights",
        str(folder / "lm_weights.hdf5"),
    ]
    return folder, model


def test_index_keys_and_sentence_to_index_as_allennlp_reads_them(bilm, tmp_path):
    folder, model = bilm
    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    out = tmp_path / "out.hdf5"
    assert main(["embed", *model, str(tmp_path / "in.txt"), str(out), "--batch-size", "2"]) == 0
    embedder = elmo_jax.ElmoEmbedder(folder / "options.json", folder / "lm_weights.hdf5")
    want = embedder.embed_sentences([line.split() for line in LINES], batch_size=2)
    with h5py.File(out, "r") as f:
        # AllenNLP's how-to: the index maps the sentence (the stripped line) to its hdf5 key.
        sentence_to_index = json.loads(f["sentence_to_index"][0])
        assert sentence_to_index == {
            "The cat sat .": "3",  # a repeated sentence keeps its last line, as a dict does
            "A  dog   barked": "1",
            "": "2",
            "Ünïcode wörds here": "4",
        }
        assert sorted(k for k in f if k != "sentence_to_index") == ["0", "1", "2", "3", "4"]
        for i, line in enumerate(LINES):
            vectors = f[str(i)][...]
            assert vectors.dtype == np.float32
            assert vectors.shape == (3, len(line.split()), 16)
            np.testing.assert_allclose(vectors, want[i], atol=1e-6)
        np.testing.assert_array_equal(f[sentence_to_index["A  dog   barked"]][...], f["1"][...])
    assert main(["embed", *model, str(tmp_path / "in.txt"), str(out), "--forget-sentences"]) == 0
    with h5py.File(out, "r") as f:
        assert "sentence_to_index" not in f and len(f) == 5


def test_sentence_keys(bilm, tmp_path, capsys):
    _, model = bilm
    lines = ["The cat sat .", "A dog barked loudly", "Ünïcode wörds"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "keys.hdf5"
    args = ["embed", *model, str(tmp_path / "in.txt"), str(out), "--use-sentence-keys", "--top"]
    assert main(args) == 0
    (tmp_path / "plain.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["embed", *model, str(tmp_path / "plain.txt"), str(tmp_path / "p.hdf5")]) == 0
    with h5py.File(out, "r") as f, h5py.File(tmp_path / "p.hdf5", "r") as plain:
        assert sorted(f) == sorted(lines)  # no sentence_to_index with sentence keys
        for i, sentence in enumerate(lines):
            assert f[sentence].shape == (len(sentence.split()), 16)
            np.testing.assert_allclose(f[sentence][...], plain[str(i)][2], atol=1e-6)
    # AllenNLP refuses duplicates; we also refuse what hdf5 cannot name, before any work.
    for bad, message in (
        ("a b\nc d\na b\n", "line 3 repeats line 1"),
        ("a b\n\nc\n", "line 2 is blank"),
        ("and/or\n", "line 1 contains '/'"),
    ):
        (tmp_path / "bad.txt").write_text(bad, encoding="utf-8")
        target = tmp_path / "bad.hdf5"
        assert (
            main(["embed", *model, str(tmp_path / "bad.txt"), str(target), "--use-sentence-keys"])
            == 2
        )
        assert message in capsys.readouterr().err
        assert not target.exists() and not list(tmp_path.glob("*.partial"))


def test_python_api_shapes_and_modes(bilm):
    folder, _ = bilm
    params, config = elmo_jax.load_allennlp(folder / "options.json", folder / "lm_weights.hdf5")
    one = elmo_jax.embed_sentence(params, config, ["The", "cat", "sat"])
    assert one.shape == (3, 3, 16) and one.dtype == np.float32
    sentences = [["The", "cat"], [], ["A", "much", "longer", "sentence", "than", "that"]]
    many = elmo_jax.embed_sentences(params, config, sentences, batch_size=2)
    assert [m.shape for m in many] == [(3, 2, 16), (3, 0, 16), (3, 6, 16)]
    embedder = elmo_jax.ElmoEmbedder(params=params, config=config)
    np.testing.assert_allclose(embedder.embed_sentence(["The", "cat", "sat"]), one, atol=1e-6)
    np.testing.assert_allclose(embedder.embed_batch(sentences)[2], many[2], atol=1e-6)
    top = elmo_jax.embed_sentences(params, config, sentences, layers="top")
    np.testing.assert_allclose(top[2], many[2][-1], atol=1e-6)
    # Stateful: input order, batch rows carry their state, so a repeat differs from the first.
    stateful = elmo_jax.embed_sentences(params, config, [["a", "b"]] * 2, 1, stateful=True)
    assert not np.allclose(stateful[0], stateful[1])
    np.testing.assert_allclose(
        stateful[0], elmo_jax.embed_sentence(params, config, ["a", "b"]), atol=1e-6
    )
    with pytest.raises(ValueError, match="list of strings"):
        elmo_jax.embed_sentence(params, config, "The cat")
