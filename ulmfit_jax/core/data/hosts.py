"""How the rows of a global batch are split between hosts.

Every batch iterator (the ULMFiT LM stream and classifier batches, the ELMo biLM stream) builds
the same global batch on every host and keeps only this host's contiguous block of rows; see
`ulmfit_jax.core.runner.sharding` for how those blocks become one global array.
"""

from __future__ import annotations


def host_batch_size(batch_size: int, shard_index: int, shard_count: int) -> int:
    """The rows of each global batch that host `shard_index` of `shard_count` reads.

    Host `i` reads rows `[i * n, (i + 1) * n)` of every batch, `n` the returned size.

    Raises:
      ValueError: the index is outside `[0, shard_count)`, or `shard_count` does not divide
        `batch_size`.
    """
    if not 0 <= shard_index < shard_count or batch_size % shard_count:
        raise ValueError(
            f"need 0 <= shard_index ({shard_index}) < shard_count ({shard_count}) and "
            f"shard_count dividing batch_size ({batch_size})"
        )
    return batch_size // shard_count
