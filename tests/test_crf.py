"""The linear-chain CRF against brute-force enumeration, and its constraints (AllenNLP's)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from elmo_jax.downstream import crf

BIO = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
BIOUL = ("O", "B-PER", "I-PER", "L-PER", "U-PER", "B-LOC", "I-LOC", "L-LOC", "U-LOC")


def random_case(seed, num_tags, batch=4, time=5):
    rng = np.random.default_rng(seed)
    params = {
        "transitions": rng.normal(size=(num_tags, num_tags)).astype(np.float32),
        "start": rng.normal(size=num_tags).astype(np.float32),
        "end": rng.normal(size=num_tags).astype(np.float32),
    }
    emissions = rng.normal(size=(batch, time, num_tags)).astype(np.float32) * 2
    lengths = rng.integers(1, time + 1, size=batch)
    lengths[0] = time  # one full row, one of length 1
    lengths[-1] = 1
    mask = np.arange(time)[None] < lengths[:, None]
    return params, emissions, mask, lengths


def brute_force(params, emissions, length, allowed=None):
    """(log-partition, best path, best score) over every (allowed) sequence of `length`."""
    num_tags = emissions.shape[-1]
    scores, paths = [], []
    for path in itertools.product(range(num_tags), repeat=length):
        if allowed is not None and not valid(path, *allowed):
            continue
        scores.append(brute_force_score(params, emissions, path))
        paths.append(path)
    scores = np.array(scores, np.float64)
    best = int(np.argmax(scores))
    return np.logaddexp.reduce(scores), paths[best], scores[best]


def valid(path, transitions, start, end):
    return (
        start[path[0]]
        and end[path[-1]]
        and all(transitions[a][b] for a, b in zip(path, path[1:], strict=False))
    )


@pytest.mark.parametrize("num_tags,seed", [(3, 0), (3, 1), (4, 2), (4, 3)])
def test_log_partition_and_viterbi_equal_brute_force(num_tags, seed):
    params, emissions, mask, lengths = random_case(seed, num_tags)
    log_z = np.asarray(crf.log_partition(params, emissions, mask))
    tags, scores = map(np.asarray, crf.viterbi_decode(params, emissions, mask))
    tags_in = np.random.default_rng(seed).integers(0, num_tags, size=mask.shape)
    ll = np.asarray(crf.crf_log_likelihood(params, emissions, tags_in, mask))
    for b, n in enumerate(lengths):
        expected_z, expected_path, expected_score = brute_force(params, emissions[b], n)
        np.testing.assert_allclose(log_z[b], expected_z, atol=1e-5, rtol=0)
        assert tuple(tags[b, :n]) == expected_path and not tags[b, n:].any()
        np.testing.assert_allclose(scores[b], expected_score, atol=1e-5, rtol=0)
        gold = tuple(tags_in[b, :n])
        gold_score = brute_force_score(params, emissions[b], gold)
        np.testing.assert_allclose(ll[b], gold_score - expected_z, atol=1e-5, rtol=0)


def brute_force_score(params, emissions, path):
    """The score of one path, summed term by term."""
    s = params["start"][path[0]] + params["end"][path[-1]]
    s += sum(emissions[t, y] for t, y in enumerate(path))
    return s + sum(params["transitions"][a, b] for a, b in zip(path, path[1:], strict=False))


@pytest.mark.parametrize("scheme,labels", [("BIO", BIO[:3]), ("BIOUL", BIOUL[:5])])
@pytest.mark.parametrize("seed", [0, 1])
def test_constrained_partition_and_viterbi_range_over_allowed_sequences(scheme, labels, seed):
    constraints = crf.transition_constraints(scheme, labels)
    allowed = tuple(
        np.array(a) for a in (constraints.transitions, constraints.start, constraints.end)
    )
    params, emissions, mask, lengths = random_case(seed, len(labels), batch=3, time=4)
    log_z = np.asarray(crf.log_partition(params, emissions, mask, constraints))
    tags, scores = map(np.asarray, crf.viterbi_decode(params, emissions, mask, constraints))
    for b, n in enumerate(lengths):
        expected_z, expected_path, expected_score = brute_force(params, emissions[b], n, allowed)
        np.testing.assert_allclose(log_z[b], expected_z, atol=1e-5, rtol=0)
        assert tuple(tags[b, :n]) == expected_path
        np.testing.assert_allclose(scores[b], expected_score, atol=1e-5, rtol=0)


def test_allowed_transitions_match_allennlp_for_bio():
    # AllenNLP's own test case: labels {0: O, 1: B-PER, 2: I-PER}, START 3, END 4.
    allowed = set(crf.allowed_transitions("BIO", {0: "O", 1: "B-PER", 2: "I-PER"}))
    assert allowed == {
        (0, 0), (0, 1), (0, 4), (1, 0), (1, 1), (1, 2), (1, 4),
        (2, 0), (2, 1), (2, 2), (2, 4), (3, 0), (3, 1),
    }  # fmt: skip
    bioul = set(crf.allowed_transitions("BIOUL", ("O", "B-X", "I-X", "L-X", "U-X")))
    assert (5, 2) not in bioul and (5, 3) not in bioul and (1, 6) not in bioul
    assert {(5, 0), (5, 1), (5, 4), (3, 6), (4, 6), (0, 6), (1, 2), (2, 3)} <= bioul
    with pytest.raises(ValueError, match="unknown constraint type"):
        crf.allowed_transitions("BILOUX", BIO)


def test_allowed_transitions_match_allennlp_for_iob1_and_bmes():
    # AllenNLP's expected sets for these label lists (START and END are the last two indices).
    iob1 = set(crf.allowed_transitions("IOB1", ("O", "B-X", "I-X", "B-Y", "I-Y")))
    assert iob1 == {
        (0, 0), (0, 2), (0, 4), (0, 6),
        (1, 0), (1, 1), (1, 2), (1, 4), (1, 6),
        (2, 0), (2, 1), (2, 2), (2, 4), (2, 6),
        (3, 0), (3, 2), (3, 3), (3, 4), (3, 6),
        (4, 0), (4, 2), (4, 3), (4, 4), (4, 6),
        (5, 0), (5, 2), (5, 4),
    }  # fmt: skip
    bmes_labels = ("B-X", "M-X", "E-X", "S-X", "B-Y", "M-Y", "E-Y", "S-Y")
    bmes = set(crf.allowed_transitions("BMES", bmes_labels))
    assert bmes == {
        (0, 1), (0, 2),
        (1, 1), (1, 2),
        (2, 0), (2, 3), (2, 4), (2, 7), (2, 9),
        (3, 0), (3, 3), (3, 4), (3, 7), (3, 9),
        (4, 5), (4, 6),
        (5, 5), (5, 6),
        (6, 0), (6, 3), (6, 4), (6, 7), (6, 9),
        (7, 0), (7, 3), (7, 4), (7, 7), (7, 9),
        (8, 0), (8, 3), (8, 4), (8, 7),
    }  # fmt: skip


def bio_valid(tags):
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def bioul_valid(tags):
    state = None  # the open entity's type
    for tag in tags:
        prefix, entity = (tag.split("-", 1) + [""])[:2]
        if state is None and prefix in ("I", "L"):
            return False
        if state is not None and (prefix not in ("I", "L") or entity != state):
            return False
        state = entity if prefix in ("B", "I") else None
    return state is None


@pytest.mark.parametrize(
    "scheme,labels,check", [("BIO", BIO, bio_valid), ("BIOUL", BIOUL, bioul_valid)]
)
def test_constrained_decoding_never_emits_an_invalid_sequence(scheme, labels, check):
    constraints = crf.transition_constraints(scheme, labels)
    decode = jax.jit(crf.viterbi_decode, static_argnums=3)
    invalid_unconstrained = 0
    for seed in range(40):
        params, emissions, mask, lengths = random_case(seed, len(labels), batch=8, time=7)
        emissions = emissions * 3  # strong emissions: unconstrained paths are often invalid
        tags = np.asarray(decode(params, emissions, mask, constraints)[0])
        free = np.asarray(decode(params, emissions, mask, None)[0])
        for b, n in enumerate(lengths):
            assert check([labels[i] for i in tags[b, :n]]), (seed, b, tags[b, :n])
            invalid_unconstrained += not check([labels[i] for i in free[b, :n]])
    assert invalid_unconstrained > 20  # the property is not vacuous


def test_gradients_are_finite_with_constraints_and_padding():
    constraints = crf.transition_constraints("BIO", BIO)
    params, emissions, mask, _ = random_case(5, len(BIO), batch=3, time=6)
    tags = np.zeros(mask.shape, np.int32)

    def loss(p, e):
        return -jnp.sum(crf.crf_log_likelihood(p, e, tags, mask, constraints))

    grads = jax.grad(loss, argnums=(0, 1))(params, emissions)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert not np.asarray(grads[1])[~mask].any()  # padding gets no gradient


def test_empty_rows_score_zero_and_decode_to_zeros():
    params, emissions, _, _ = random_case(0, 3, batch=2, time=3)
    mask = np.array([[True, True, False], [False, False, False]])
    ll = crf.crf_log_likelihood(params, emissions, np.ones((2, 3), np.int32), mask)
    tags, scores = crf.viterbi_decode(params, emissions, mask)
    assert float(ll[1]) == 0.0 and float(scores[1]) == 0.0 and not np.asarray(tags[1]).any()
    assert float(ll[0]) < 0.0


def test_nnx_module_holds_params_and_decodes_under_its_constraints():
    module = crf.CRF(len(BIO), constraint_type="BIO", labels=BIO, rngs=nnx.Rngs(0))
    state = nnx.state(module, nnx.Param)
    assert {k for k, _ in nnx.to_flat_state(state)} == {
        ("transitions",),
        ("start",),
        ("end",),
    }
    params, emissions, mask, _ = random_case(1, len(BIO), batch=4, time=6)
    expected = crf.viterbi_decode(module.to_params(), emissions, mask, module.constraints)[0]
    np.testing.assert_array_equal(module.decode(emissions, mask)[0], expected)
    grads = nnx.grad(lambda m: -m.log_likelihood(emissions, expected, mask).sum())(module)
    assert np.abs(np.asarray(grads["transitions"].get_value())).sum() > 0
    with pytest.raises(ValueError, match="5 tag names"):
        crf.CRF(len(BIO), constraint_type="BIO", labels=BIO[:2], rngs=nnx.Rngs(0))
