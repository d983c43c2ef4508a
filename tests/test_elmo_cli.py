"""The embedding command on AllenNLP's fixture: stateful parity, bucketing, layers, bad input."""

import h5py
import jax
import numpy as np
import pytest
from elmo_fixtures import fixture_dir, load_fixture_sentences, load_fixture_top_layers

from elmo_jax.__main__ import main
from elmo_jax.model.bilm import bilm_apply
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.weights.allennlp import load_allennlp


@pytest.fixture(scope="module")
def files(shared_dir):
    directory = fixture_dir(shared_dir)
    return directory, [
        "--options",
        str(directory / "options.json"),
        "--weights",
        str(directory / "lm_weights.hdf5"),
    ]


def _read(path):
    """The embedding datasets (AllenNLP's `sentence_to_index` JSON left out)."""
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f if k != "sentence_to_index"}


def test_stateful_command_reproduces_the_fixture(files, tmp_path, capsys):
    directory, model = files
    sentences = load_fixture_sentences(directory)
    expected = load_fixture_top_layers(directory)
    # Batch i is [sentences[0][i], sentences[1][i], sentences[2][i]]: interleave in file order.
    lines = [sentences[k][i] for i in range(10) for k in range(3)]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [*model, str(tmp_path / "in.txt"), str(tmp_path / "out.hdf5")]
    assert main(["embed", *args, "--stateful", "--batch-size", "3", "--layers", "top"]) == 0
    out = _read(tmp_path / "out.hdf5")
    assert sorted(out, key=int) == [str(j) for j in range(30)]
    worst = max(
        float(np.abs(out[str(3 * i + k)] - expected[k][i]).max())
        for i in range(10)
        for k in range(3)
    )
    assert worst < 1e-5
    captured = capsys.readouterr()
    assert "tokens/s" in captured.out  # the throughput line
    assert "it/s" not in captured.err and "sent/s" not in captured.err  # no bar off a terminal


def test_stateless_bucketing_changes_nothing(files, tmp_path, capsys):
    directory, model = files
    sentences = [s for group in load_fixture_sentences(directory) for s in group]
    lines = sentences[:12] + ["", "   "] + sentences[12:]  # blank lines keep their index
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [*model, str(tmp_path / "in.txt"), str(tmp_path / "out.hdf5")]
    # 30 sentences sorted by length into 2 batches of 16 (the second padded with empty rows),
    # padded to 2 different bucket lengths.
    assert main(["embed", *args, "--batch-size", "16"]) == 0
    assert "(2 compiled shapes)" in capsys.readouterr().out
    out = _read(tmp_path / "out.hdf5")
    assert len(out) == 32 and out["12"].shape == out["13"].shape == (3, 0, 32)
    # Reference: every sentence in one unsorted batch, padded to one length, zero state.
    params, config = load_allennlp(directory / "options.json", directory / "lm_weights.hdf5")
    tokens = [s.split() for s in sentences]
    layers, mask, _ = jax.jit(bilm_apply, static_argnums=1)(
        params, config, batch_to_ids(tokens, pad_to=56)
    )
    ref = np.stack([np.asarray(x)[:, 1:-1] for x in layers], 1)  # <S> off; compared to length
    for j, line in enumerate(lines):
        if line.strip():
            r = sentences.index(line)
            assert out[str(j)].shape == (3, len(tokens[r]), 32)
            np.testing.assert_allclose(out[str(j)], ref[r, :, : len(tokens[r])], atol=1e-5)

    # top / average are the last layer / the mean of the layers (a short file: one shape).
    (tmp_path / "short.txt").write_text(f"{lines[5]}\n\n", encoding="utf-8")
    short = [*model, str(tmp_path / "short.txt"), str(tmp_path / "short.hdf5")]
    for mode in ("top", "average"):
        assert main(["embed", *short, "--batch-size", "8", "--layers", mode]) == 0
        other = _read(tmp_path / "short.hdf5")
        want = {"top": out["5"][2], "average": out["5"].mean(0)}[mode]
        np.testing.assert_allclose(other["0"], want, atol=1e-5)
        assert other["1"].shape == (0, 32)


def test_token_cache_gives_the_same_embeddings(files, tmp_path):
    directory, model = files
    sentences = load_fixture_sentences(directory)[0]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    (tmp_path / "vocab.txt").write_text("The\nof\n,\n", encoding="utf-8")
    args = [*model, str(tmp_path / "in.txt")]
    assert main(["embed", *args, str(tmp_path / "a.hdf5"), "--batch-size", "8"]) == 0
    assert (
        main(
            [
                "embed",
                *args,
                str(tmp_path / "b.hdf5"),
                "--batch-size",
                "8",
                "--vocab",
                str(tmp_path / "vocab.txt"),
            ]
        )
        == 0
    )
    a, b = _read(tmp_path / "a.hdf5"), _read(tmp_path / "b.hdf5")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5)


def test_tokens_command_reproduces_elmo_token_embeddings(files, tmp_path):
    directory, model = files
    out = tmp_path / "tokens.hdf5"
    assert main(["tokens", *model, str(directory / "vocab_test.txt"), str(out)]) == 0
    with h5py.File(directory / "elmo_token_embeddings.hdf5") as want, h5py.File(out) as got:
        np.testing.assert_allclose(got["embedding"][...], want["embedding"][...], atol=1e-5)


def test_bad_input_is_a_one_line_error(files, tmp_path, capsys):
    directory, model = files
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    out = str(tmp_path / "out.hdf5")
    assert main(["embed", *model, str(bad), out]) == 2
    err = capsys.readouterr().err
    assert "line 2 is not valid UTF-8" in err and "0xff" in err and "Traceback" not in err
    assert main(["embed", *model, str(bad), out, "--invalid-utf8", "replace"]) == 0
    assert _read(out)["1"].shape == (3, 3, 32)  # "bad", "\ufffd", "byte"

    wrong = tmp_path / "options.json"
    wrong.write_text((directory / "options.json").read_text().replace('"dim": 64', '"dim": 32'))
    assert main(["embed", "--options", str(wrong), "--weights", model[3], str(bad), out]) == 2
    err = capsys.readouterr().err
    assert "RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0" in err and "(32, 256)" in err
    assert main(["embed", *model, str(tmp_path / "missing.txt"), out]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert main(["embed", *model, str(bad), out, "--batch-size", "0"]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give a command: embed, tokens"),
        (["embedd", "a", "b"], "unknown command 'embedd'"),
        (["embed", "--model", "small", "in.txt"], "embed takes 2 arguments, INPUT OUTPUT"),
        (["embed", "--model", "small", "a", "b", "--top", "--layers", "top"], "give one of"),
        (["embed", "--model", "small", "a", "b", "--batch-size", "x"], "flag --batch-size=x"),
        (["embed", "--model", "small", "a", "b", "--bogus"], "Unknown command line flag 'bogus'"),
        (["tokens", "--model", "small", "--options", "o.json", "v", "o"], "not both"),
        (["tokens", "v", "o"], "give either --model NAME or both --options and --weights"),
    ],
)
def test_command_line_mistakes_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("elmo-jax: error: ") and message in err
    assert err.count("\n") == 1, err


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as info:
        main(["embed", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "--batch-size" in out and "--stateful" in out
    assert main(["--help"]) == 0 and "tokens VOCAB OUTPUT" in capsys.readouterr().out
