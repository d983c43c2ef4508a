"""Data parallelism over a mesh of devices and hosts, shared by the ULMFiT and ELMo programs.

Every training step is `jax.jit` with `NamedSharding`s over a one-axis mesh (`"data"`):
parameters, optimiser state, step and RNG key replicated; the batch and the carried LSTM state
split on their batch axis; the state donated. XLA inserts the gradient all-reduce. Because the
step is one program over *global* arrays, dropout masks are drawn for the global batch shape
(`jax.random` is sharding-invariant: `jax_threefry_partitionable`, on by default, generates
each device's part locally), so a step's result does not depend on how many devices share it.

    mesh = sharding.make_mesh()                      # all devices, host by host
    batch = sharding.put_batch(host_rows, mesh)      # this host's rows -> one global array
    state = sharding.put_tree(state, sharding.state_shardings(state, mesh))

Devices are ordered by (process, id), so host `i` owns the contiguous rows `[i * b, (i + 1) *
b)` of a global batch of `b * process_count` rows, the rows `LMStream(shard_index=i, ...)`
produces, and device `d` always holds the same rows: the carried state never moves.

Several hosts (a TPU pod slice, a GPU cluster) run the same command; `maybe_initialize_distributed`
connects them (a no-op on one host), each host reads its part of the data and
`jax.make_array_from_process_local_data` assembles the global batch.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

DATA_AXIS = "data"

# Environment variables naming several processes of a cluster on which
# `jax.distributed.initialize()` detects everything itself: a list of hosts (TPU slices on GKE)
# or a process count (SLURM, Open MPI).
_CLUSTER_ENV = (
    "TPU_WORKER_HOSTNAMES",
    "TPU_PROCESS_ADDRESSES",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
)


def _several(name: str) -> bool:
    value = os.environ.get(name, "")
    return "," in value or (value.isdigit() and int(value) > 1)


def maybe_initialize_distributed(mode: str = "auto") -> bool:
    """Connect the processes of a multi-host run; returns whether JAX is now distributed.

    Call before any other JAX call. Modes:

    * `"auto"` (default): initialise when the environment names several processes:
      `JAX_COORDINATOR_ADDRESS` (with `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), a multi-host TPU
      slice on GKE (`TPU_WORKER_HOSTNAMES`), SLURM (`SLURM_NTASKS` > 1) or Open MPI
      (`OMPI_COMM_WORLD_SIZE` > 1). Otherwise a no-op: one host needs nothing.
    * `"on"`: always call `jax.distributed.initialize()` (Cloud TPU VMs of a pod slice, where
      the topology comes from the metadata server; one host of a single-host slice works too).
    * `"off"`: never.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"distributed mode must be 'auto', 'on' or 'off', got {mode!r}")
    if jax.distributed.is_initialized():
        return True
    if mode == "off":
        return False
    explicit = os.environ.get("JAX_COORDINATOR_ADDRESS")
    detected = any(_several(n) for n in _CLUSTER_ENV)
    detected = detected or bool(os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))  # multislice
    if mode == "auto" and not explicit and not detected:
        return False
    kwargs: dict[str, Any] = {}
    if explicit:
        kwargs["coordinator_address"] = explicit
        for key, env in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
            if os.environ.get(env):
                kwargs[key] = int(os.environ[env])
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as error:
        raise RuntimeError(
            f"could not start a multi-host run ({error}); on one machine use --distributed=off, "
            "else set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID "
            "on every process"
        ) from error
    log.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
    return True


# --------------------------------------------------------------------------------------------
# Meshes
# --------------------------------------------------------------------------------------------


def _ordered(devices: Sequence[jax.Device]) -> list[jax.Device]:
    return sorted(devices, key=lambda d: (d.process_index, d.id))


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis `"data"` mesh over `devices` (default: every device of every host), ordered
    by (process, device id) so that each host's devices hold a contiguous block of rows."""
    devices = _ordered(jax.devices() if devices is None else list(devices))
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    per_process = {}
    for d in devices:
        per_process[d.process_index] = per_process.get(d.process_index, 0) + 1
    if len(set(per_process.values())) > 1:
        raise ValueError(f"every process needs the same number of mesh devices, got {per_process}")
    return Mesh(np.array(devices), (DATA_AXIS,))


@functools.lru_cache(maxsize=16)
def mesh_for_batch(batch_size: int, num_devices: int = 0) -> Mesh:
    """The training programs' mesh for a global batch of `batch_size` rows.

    Args:
      batch_size: global rows per batch (the stream rows of a language model).
      num_devices: devices to use, over all hosts; 0 means all of them when the batch splits
        evenly over them, otherwise the most (per host) that it splits over, with a warning.

    Raises:
      ValueError: the batch cannot be split over the hosts, or over `num_devices` devices.
    """
    processes = jax.process_count()
    local = jax.local_device_count()
    if batch_size % processes:
        raise ValueError(
            f"batch size {batch_size} does not split over {processes} hosts: use a multiple of "
            f"{processes}"
        )
    local_rows = batch_size // processes
    if num_devices:
        if num_devices % processes or num_devices // processes > local:
            raise ValueError(
                f"num_devices={num_devices} is not a whole number of devices per host "
                f"({processes} hosts with {local} devices each)"
            )
        per_host = num_devices // processes
        if local_rows % per_host:
            raise ValueError(
                f"batch size {batch_size} does not split over {num_devices} devices: use a "
                f"multiple of {num_devices}, or another num_devices"
            )
    else:
        per_host = max(k for k in range(1, local + 1) if local_rows % k == 0)
        if per_host < local:
            log.warning(
                "batch size %d does not split over %d devices: using %d (use a multiple of "
                "%d to use them all)",
                batch_size,
                local * processes,
                per_host * processes,
                local * processes,
            )
    devices = [d for p in range(processes) for d in _ordered(_process_devices(p))[:per_host]]
    return make_mesh(devices)


def _process_devices(process: int) -> list[jax.Device]:
    return [d for d in jax.devices() if d.process_index == process]


def check_batch(mesh: Mesh, batch_size: int, what: str = "batch size") -> None:
    """Raise a `ValueError` naming the problem when `batch_size` rows cannot be split evenly
    over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(
            f"{what} {batch_size} does not split over the {mesh.size} devices of the mesh: use a "
            f"multiple of {mesh.size}, or a mesh of fewer devices (ulmfit_jax.core.runner."
            f"sharding.make_mesh(jax.devices()[:n]))"
        )


# --------------------------------------------------------------------------------------------
# Shardings
# --------------------------------------------------------------------------------------------


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser state, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Rows split over the `"data"` axis along dimension `axis` (0: `[batch, ...]`; ELMo's
    `[direction, batch, ...]` arrays use 1, its state `[layer, direction, batch, ...]` 2)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def state_shardings(
    state: Mapping[str, Any], mesh: Mesh, batch_axes: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """A sharding prefix for a training-state dict: entries named in `batch_axes` (default
    `{"lstm_state": 0}` when present) split on that axis, everything else replicated."""
    if batch_axes is None:
        batch_axes = {"lstm_state": 0}
    return {
        k: batch_sharding(mesh, batch_axes[k]) if k in batch_axes else replicated(mesh)
        for k in state
    }


def _expand(prefix: Any, tree: Any) -> Any:
    """Broadcast a sharding prefix over `tree`'s leaves."""
    return jax.tree.map(
        lambda s, sub: jax.tree.map(lambda _: s, sub),
        prefix,
        tree,
        is_leaf=lambda x: isinstance(x, jax.sharding.Sharding),
    )


def put_tree(tree: Any, shardings: Any) -> Any:
    """Place a pytree whose leaves hold the *global* value on every host (numpy, uncommitted or
    single-device arrays) according to `shardings` (one sharding, or a prefix of `tree`).
    Leaves already placed with exactly these shardings are returned as they are."""
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, tree)
    else:
        shardings = _expand(shardings, tree)

    def put(x, s):
        if isinstance(x, jax.Array):
            # Exactly this sharding, not merely an equivalent one: jit keys its cache on the
            # sharding, so a single-device array fed where later steps pass mesh-sharded ones
            # would compile the step a second time.
            if x.sharding == s:
                return x
            if x.is_fully_addressable and s.is_fully_addressable:
                return jax.device_put(x, s)
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, s, lambda index: value[index])

    return jax.tree.map(put, tree, shardings)


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """`put_tree(tree, replicated(mesh))`."""
    return put_tree(tree, replicated(mesh))


def put_batch(tree: Any, mesh: Mesh, axis: int = 0) -> Any:
    """This host's rows of a batch -> global arrays split over the mesh along `axis`.

    On one host the local rows are the whole batch; on several, host `i`'s rows are the `i`-th
    block of the global batch (`jax.make_array_from_process_local_data`).
    """
    sharding = batch_sharding(mesh, axis)
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(x):
        x = np.asarray(x)
        if x.ndim <= axis or x.shape[axis] % local_devices:
            raise ValueError(
                f"this host's batch has {x.shape[axis] if x.ndim > axis else 0} rows, which do "
                f"not split over its {local_devices} devices of the mesh"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, tree)


def fits(mesh: Mesh, rows: int) -> bool:
    """Whether `rows` split evenly over the mesh."""
    return rows % mesh.size == 0


def process_shard() -> tuple[int, int]:
    """`(shard_index, shard_count)` of this host's part of the data."""
    return jax.process_index(), jax.process_count()
