"""A linear-chain CRF over masked, padded batches, and AllenNLP's constrained transitions.

    params = init_crf(rng, num_tags)   # {"transitions": [N, N], "start": [N], "end": [N]}
    constraints = transition_constraints("BIO", ("O", "B-PER", "I-PER"))
    ll = crf_log_likelihood(params, emissions, tags, mask)           # float[B]
    tags, score = viterbi_decode(params, emissions, mask, constraints)  # int32[B, T], float[B]

The score of a tag sequence y_1..y_n (n = a row's length) is

    start[y_1] + sum_t emissions[t, y_t] + sum_{t>1} transitions[y_{t-1}, y_t] + end[y_n]

and the log-likelihood is that score minus the log-partition over every sequence (the forward
algorithm in log space, one `lax.scan` over time). Viterbi decoding is the same recursion with
max for logsumexp, then a backtrace (a reverse `lax.scan` over the backpointers).

Masks are prefixes (padding at the end of each row); at a padded step the recursions leave the
row's scores unchanged, so every row ends at its own last real token. A row of length 0 has
log-likelihood 0 and decodes to all zeros. Decoded tags at padded steps are 0.

Constraints (AllenNLP's `allowed_transitions`) forbid the transitions a tagging scheme does not
allow, e.g. `O -> I-PER`, `B-PER -> I-LOC` and starting on `I-x` in BIO. Forbidden scores are
replaced by `NEG` (AllenNLP's -10000: finite, so gradients stay finite, but exp(NEG) is 0 in
float32): Viterbi then never emits them, and the log-partition with constraints runs over the
allowed sequences only. Applied in `crf_log_likelihood` too (`constraints=`), training
normalises over valid sequences; AllenNLP applies them only when decoding, the default here.

`CRF` is the NNX module holding the three arrays as `nnx.Param`s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ulmfit_jax.core.nn.nnx_params import ParamTree

Params = dict
NEG = -10000.0  # AllenNLP's score for a forbidden transition


@dataclasses.dataclass(frozen=True)
class _SchemeRules:
    """One tagging scheme's transitions, by tag prefix ("B", "I", "O", ...).

    A transition `from -> to` is allowed when `to` may begin a sequence (`from` is START),
    `from` may end one (`to` is END), `(from, to)` is in `between` whatever the entities, or
    it is in `within` and both tags name the same entity. `None` stands for any prefix.
    """

    first: frozenset[str]
    last: frozenset[str]
    between: tuple[frozenset[str] | None, frozenset[str]]
    within: tuple[frozenset[str], frozenset[str]]

    def allows(self, from_tag: str, from_entity: str, to_tag: str, to_entity: str) -> bool:
        if to_tag == "START" or from_tag == "END":
            return False
        if from_tag == "START":
            return to_tag in self.first
        if to_tag == "END":
            return from_tag in self.last
        (free_from, free_to), (same_from, same_to) = self.between, self.within
        if (free_from is None or from_tag in free_from) and to_tag in free_to:
            return True
        return from_tag in same_from and to_tag in same_to and from_entity == to_entity


def _rules(first: str, last: str, between: tuple[str | None, str], within: tuple[str, str]):
    """`_SchemeRules` from strings of one-letter prefixes ("OBU" is {"O", "B", "U"})."""
    free_from, free_to = between
    return _SchemeRules(
        frozenset(first),
        frozenset(last),
        (None if free_from is None else frozenset(free_from), frozenset(free_to)),
        (frozenset(within[0]), frozenset(within[1])),
    )


# AllenNLP's `is_transition_allowed`, scheme by scheme: e.g. in BIO any tag may be followed by
# O or B, and B-x or I-x by I-x of the same entity x.
SCHEME_RULES = {
    "BIO": _rules(first="OB", last="OBI", between=(None, "OB"), within=("BI", "I")),
    "IOB1": _rules(first="OI", last="OBI", between=(None, "OI"), within=("BI", "B")),
    "BIOUL": _rules(first="OBU", last="OLU", between=("OLU", "OBU"), within=("BI", "IL")),
    "BMES": _rules(first="BS", last="ES", between=("ES", "BS"), within=("BM", "ME")),
}
SCHEMES = tuple(SCHEME_RULES)


def _split_tag(label: str) -> tuple[str, str]:
    if label in ("O", "START", "END"):
        return label, ""
    prefix, sep, entity = label.partition("-")
    if not sep or not entity:
        raise ValueError(f"tag {label!r} is neither 'O' nor 'PREFIX-TYPE' (e.g. 'B-PER')")
    return prefix, entity


def is_transition_allowed(
    constraint_type: str, from_tag: str, from_entity: str, to_tag: str, to_entity: str
) -> bool:
    """Whether a scheme allows `from_tag-from_entity -> to_tag-to_entity` (AllenNLP's function:
    tags are the prefixes "B", "I", "O", "U", "L", ..., or "START" / "END")."""
    if constraint_type not in SCHEME_RULES:
        raise ValueError(f"unknown constraint type {constraint_type!r}; expected one of {SCHEMES}")
    return SCHEME_RULES[constraint_type].allows(from_tag, from_entity, to_tag, to_entity)


def allowed_transitions(
    constraint_type: str, labels: Mapping[int, str] | Sequence[str]
) -> list[tuple[int, int]]:
    """AllenNLP's `allowed_transitions`: the allowed `(from, to)` index pairs, where index
    `len(labels)` is START and `len(labels) + 1` is END.

    Args:
      constraint_type: "BIO", "IOB1", "BIOUL" or "BMES".
      labels: tag names by index (a dict as AllenNLP's vocabulary gives, or a sequence).
    """
    if not isinstance(labels, Mapping):
        labels = dict(enumerate(labels))
    n = len(labels)
    ends = [*labels.items(), (n, "START"), (n + 1, "END")]
    allowed = []
    for i, from_label in ends:
        from_tag, from_entity = _split_tag(from_label)
        for j, to_label in ends:
            to_tag, to_entity = _split_tag(to_label)
            if is_transition_allowed(constraint_type, from_tag, from_entity, to_tag, to_entity):
                allowed.append((i, j))
    return allowed


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Which transitions a scheme allows, as boolean masks (hashable: a `jit` static argument).

    Attributes:
      transitions: bool[N, N] as nested tuples, `[from][to]`.
      start: bool[N], which tags may begin a sequence.
      end: bool[N], which tags may end one.
    """

    transitions: tuple[tuple[bool, ...], ...]
    start: tuple[bool, ...]
    end: tuple[bool, ...]

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.array(self.transitions, bool), np.array(self.start, bool), np.array(self.end)


def transition_constraints(constraint_type: str, labels: Sequence[str]) -> Constraints:
    """`allowed_transitions` as `Constraints` masks over `labels`' indices."""
    n = len(labels)
    allowed = np.zeros((n + 2, n + 2), bool)
    for i, j in allowed_transitions(constraint_type, labels):
        allowed[i, j] = True
    return Constraints(
        transitions=tuple(tuple(bool(v) for v in row[:n]) for row in allowed[:n]),
        start=tuple(bool(v) for v in allowed[n, :n]),
        end=tuple(bool(v) for v in allowed[:n, n + 1]),
    )


def init_crf(rng: jax.Array, num_tags: int) -> Params:
    """Transitions Xavier-normal, as AllenNLP's; start and end scores standard normal."""
    k_t, k_s, k_e = jax.random.split(rng, 3)
    std = np.sqrt(2.0 / (2 * num_tags))
    return {
        "transitions": std * jax.random.normal(k_t, (num_tags, num_tags), jnp.float32),
        "start": jax.random.normal(k_s, (num_tags,), jnp.float32),
        "end": jax.random.normal(k_e, (num_tags,), jnp.float32),
    }


def constrained_scores(
    params: Params, constraints: Constraints | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(transitions [N, N], start [N], end [N]) with forbidden entries set to `NEG`."""
    transitions, start, end = params["transitions"], params["start"], params["end"]
    if constraints is None:
        return transitions, start, end
    allowed, start_ok, end_ok = constraints.arrays
    return (
        jnp.where(allowed, transitions, NEG),
        jnp.where(start_ok, start, NEG),
        jnp.where(end_ok, end, NEG),
    )


def sequence_score(
    params: Params,
    emissions: jax.Array,
    tags: jax.Array,
    mask: jax.Array,
    constraints: Constraints | None = None,
) -> jax.Array:
    """The unnormalised score of `tags`.

    Args:
      params: `init_crf`'s dict.
      emissions: float[B, T, N] per-step tag scores.
      tags: int[B, T] (any value at padded steps).
      mask: bool[B, T], a prefix per row.
      constraints: forbidden transitions score `NEG`.

    Returns:
      float[B] (0 for empty rows).
    """
    transitions, start, end = constrained_scores(params, constraints)
    mask = mask.astype(bool)
    tags = jnp.where(mask, tags, 0)
    emitted = jnp.take_along_axis(emissions, tags[..., None], axis=-1)[..., 0]
    score = jnp.sum(jnp.where(mask, emitted, 0.0), axis=1)
    pair = transitions[tags[:, :-1], tags[:, 1:]]
    score = score + jnp.sum(jnp.where(mask[:, 1:], pair, 0.0), axis=1)
    lengths = jnp.sum(mask, axis=1)
    last = jnp.take_along_axis(tags, jnp.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
    score = score + start[tags[:, 0]] + end[last]
    return jnp.where(lengths > 0, score, 0.0)


def log_partition(
    params: Params,
    emissions: jax.Array,
    mask: jax.Array,
    constraints: Constraints | None = None,
) -> jax.Array:
    """log of the sum of exp(score) over every tag sequence (over the allowed ones with
    `constraints`): the forward algorithm. Shapes as `sequence_score`; float[B], 0 for empty
    rows."""
    transitions, start, end = constrained_scores(params, constraints)
    mask = mask.astype(bool)
    alpha0 = start + emissions[:, 0]  # [B, N]

    def step(alpha, inputs):
        emit, keep = inputs  # [B, N], [B]
        new = jax.nn.logsumexp(alpha[:, :, None] + transitions[None], axis=1) + emit
        return jnp.where(keep[:, None], new, alpha), None

    xs = (jnp.swapaxes(emissions[:, 1:], 0, 1), jnp.swapaxes(mask[:, 1:], 0, 1))
    alpha, _ = jax.lax.scan(step, alpha0, xs)
    return jnp.where(mask[:, 0], jax.nn.logsumexp(alpha + end, axis=1), 0.0)


def crf_log_likelihood(
    params: Params,
    emissions: jax.Array,
    tags: jax.Array,
    mask: jax.Array,
    constraints: Constraints | None = None,
) -> jax.Array:
    """log p(tags | emissions) per row, float[B] (shapes as `sequence_score`)."""
    return sequence_score(params, emissions, tags, mask, constraints) - log_partition(
        params, emissions, mask, constraints
    )


def viterbi_decode(
    params: Params,
    emissions: jax.Array,
    mask: jax.Array,
    constraints: Constraints | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The highest-scoring tag sequence of each row (among the allowed ones with `constraints`).

    Args:
      params, emissions, mask, constraints: as `sequence_score`.

    Returns:
      `(tags, scores)`: int32[B, T], 0 at padded steps; float[B], each path's score (0 for
      empty rows).
    """
    transitions, start, end = constrained_scores(params, constraints)
    mask = mask.astype(bool)
    num_tags = emissions.shape[-1]
    delta0 = start + emissions[:, 0]
    identity = jnp.broadcast_to(jnp.arange(num_tags, dtype=jnp.int32), delta0.shape)

    def forward(delta, inputs):
        emit, keep = inputs
        candidates = delta[:, :, None] + transitions[None]  # [B, from, to]
        best = jnp.argmax(candidates, axis=1).astype(jnp.int32)
        new = jnp.max(candidates, axis=1) + emit
        # At a padded step a tag points back to itself, so the backtrace passes through.
        return jnp.where(keep[:, None], new, delta), jnp.where(keep[:, None], best, identity)

    xs = (jnp.swapaxes(emissions[:, 1:], 0, 1), jnp.swapaxes(mask[:, 1:], 0, 1))
    delta, backpointers = jax.lax.scan(forward, delta0, xs)  # backpointers [T - 1, B, N]
    final = delta + end
    last = jnp.argmax(final, axis=1).astype(jnp.int32)
    score = jnp.max(final, axis=1)

    def backward(tag, pointers):
        previous = jnp.take_along_axis(pointers, tag[:, None], axis=1)[:, 0]
        return previous, previous

    first, earlier = jax.lax.scan(backward, last, backpointers, reverse=True)
    del first
    path = jnp.concatenate([jnp.swapaxes(earlier, 0, 1), last[:, None]], axis=1)
    # `earlier[t]` is the tag at step t (the pointer out of step t + 1); padded steps repeat
    # the last real tag: zero them.
    return jnp.where(mask, path, 0), jnp.where(mask[:, 0], score, 0.0)


class CRF(ParamTree):
    """The CRF's transition scores as `nnx.Param`s, and its constraints.

    Args:
      num_tags: N.
      constraint_type: "BIO", "BIOUL", ... (with `labels`), or None for no constraints.
      labels: the tag names by index, for the constraints.
      params: `init_crf`'s dict; None initialises it from `rngs.params()`.
      rngs: for initialisation.
    """

    def __init__(
        self,
        num_tags: int,
        *,
        constraint_type: str | None = None,
        labels: Sequence[str] = (),
        params: Params | None = None,
        rngs: nnx.Rngs | None = None,
    ):
        if params is None:
            if rngs is None:
                raise ValueError("CRF without params needs rngs to initialise them")
            params = init_crf(rngs.params(), num_tags)
        if constraint_type is not None and len(labels) != num_tags:
            raise ValueError(f"constraints need the {num_tags} tag names, got {len(labels)}")
        self.constraints = (
            transition_constraints(constraint_type, tuple(labels)) if constraint_type else None
        )
        self.hold(params, nnx.Param)

    def log_likelihood(
        self, emissions: jax.Array, tags: jax.Array, mask: jax.Array, *, constrained=False
    ) -> jax.Array:
        """`crf_log_likelihood`, float[B]; `constrained` normalises over allowed sequences."""
        constraints = self.constraints if constrained else None
        return crf_log_likelihood(self.to_params(), emissions, tags, mask, constraints)

    def decode(self, emissions: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`viterbi_decode` under the module's constraints: (int32[B, T], float[B])."""
        return viterbi_decode(self.to_params(), emissions, mask, self.constraints)
