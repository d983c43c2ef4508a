"""Read PyTorch `.pth` files without torch: tensors come back as numpy arrays.

Two layouts are read:

* the zip archive `torch.save` writes since PyTorch 1.6: `<name>/data.pkl` (the object pickle,
  whose persistent ids name storages), `<name>/data/<key>` (one raw storage per record) and
  `<name>/byteorder` ("little" or "big"; absent in early files, which are little-endian);
* the legacy stream (`torch.save(..., _use_new_zipfile_serialization=False)`, and every file from
  before 1.6): pickles of the magic number, protocol version and system info, then the object
  pickle, then the pickled list of storage keys, then each storage's raw bytes preceded by its
  number of elements as an int64.

The object pickle is read by an unpickler that only knows tensors, storages, `OrderedDict` and an
inert stand-in for fastai's `fastcore.foundation.L`; any other global (a function such as
`os.system`, a model class) is refused with a `ValueError` naming it, so a file cannot run code.
Tensors are rebuilt from their storage, offset, size and stride and copied, so each array owns
its memory. `bfloat16` tensors use `ml_dtypes.bfloat16` (a JAX dependency).

    >>> state = load_pth("lstm_fwd.pth")  # doctest: +SKIP
    >>> state["model"]["0.encoder.weight"].shape  # doctest: +SKIP
    (60000, 400)
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

# `torch.<Name>Storage` -> the dtype of its elements.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}

# The first three pickles of a legacy file.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    """What the unpickler returns for `torch.FloatStorage` and friends: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class FastcoreList:
    """Inert stand-in for `fastcore.foundation.L`, which fastai's `Learner.save` pickles inside
    the optimiser state. Unpickling it only stores its state; `load_pth` then turns it into a
    plain list of its items."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"items": state})


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    """A tensor as a numpy array: its view of the flat storage, copied."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[storage_offset], dtype=storage.dtype)
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    needed = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if storage_offset < 0 or min(stride) < 0 or needed > storage.size:
        raise ValueError(
            f"tensor of size {size}, stride {stride} at offset {storage_offset} does not fit in "
            f"its storage of {storage.size} elements"
        )
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(s * item for s in stride)
    )
    return np.array(view, copy=True)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *_ignored):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # Tensor subclasses (Parameter, fastai's TensorBase) are saved as a plain rebuild plus type.
    return func(*args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): "torch.Tensor",
    ("torch.nn.parameter", "Parameter"): "torch.nn.Parameter",
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("fastcore.foundation", "L"): FastcoreList,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only the globals of a tensor state dict; storages come from `load_storage`."""

    def __init__(self, file: BinaryIO, load_storage, rebuild_tensor=_rebuild_tensor_v2):
        super().__init__(file)
        self._load_storage = load_storage
        self._rebuild_tensor = rebuild_tensor

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise ValueError(
            f"the file refers to the global {module}.{name}, which a weights file has no need "
            "for; it is refused so that loading cannot run code from the file"
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise ValueError(f"unknown persistent id {pid!r}: not a PyTorch storage")
        return self._load_storage(*pid[1:])


def _storage_type(value) -> _StorageType:
    if isinstance(value, _StorageType):
        return value
    raise ValueError(f"unknown storage type {value!r}")


def _from_bytes(raw: bytes, dtype: np.dtype, byteorder: str) -> np.ndarray:
    array = np.frombuffer(raw, dtype)
    return array if byteorder == sys.byteorder else array.byteswap()


def _load_zip(archive: zipfile.ZipFile) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if not pickles:
        raise ValueError("a zip file without a data.pkl record: not written by torch.save")
    pkl = min(pickles, key=len)
    prefix = pkl[: -len("data.pkl")]
    byteorder = "little"
    if f"{prefix}byteorder" in archive.namelist():
        byteorder = archive.read(f"{prefix}byteorder").decode().strip()
    storages: dict[str, np.ndarray] = {}

    def load_storage(storage_type, key, location, numel, *_ignored):
        dtype = _storage_type(storage_type).dtype
        if key not in storages:
            raw = archive.read(f"{prefix}data/{key}")
            if len(raw) < numel * dtype.itemsize:
                raise ValueError(f"storage {key} holds {len(raw)} bytes, not {numel} elements")
            storages[key] = _from_bytes(raw[: numel * dtype.itemsize], dtype, byteorder)
        return storages[key]

    return _RestrictedUnpickler(io.BytesIO(archive.read(pkl)), load_storage).load()


class _Deferred:
    """A legacy-file tensor: its storage's bytes come after the object pickle."""

    def __init__(self, key: str, storage_offset: int, size, stride):
        self.key, self.storage_offset, self.size, self.stride = key, storage_offset, size, stride


class _NoGlobals(pickle.Unpickler):
    """For the legacy file's plain-data pickles (magic number, system info, storage keys)."""

    def find_class(self, module: str, name: str):
        raise ValueError(f"the file refers to the global {module}.{name} where only data belongs")


def _load_legacy(f: BinaryIO) -> Any:
    def header(what):
        try:
            return _NoGlobals(f).load()
        except Exception as error:
            raise ValueError(f"not a PyTorch file: cannot read its {what} ({error})") from error

    if header("magic number") != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch file: wrong magic number (or the pre-0.4 tar format)")
    protocol = header("protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"unsupported legacy PyTorch protocol version {protocol}")
    header("system information")

    # The object pickle comes first: note each storage's dtype, read the bytes after it.
    dtypes: dict[str, np.dtype] = {}
    views: dict[str, tuple[str, int, int]] = {}

    def load_storage(storage_type, key, location, numel, view_metadata=None, *_ignored):
        dtypes.setdefault(key, _storage_type(storage_type).dtype)
        if view_metadata is not None:  # PyTorch < 2 could save a view of a larger storage
            view_key, offset, view_size = view_metadata
            views[view_key] = (key, offset, view_size)
            return view_key
        return key

    def deferred_tensor(key, storage_offset, size, stride, *_ignored):
        return _Deferred(key, storage_offset, size, stride)

    obj = _RestrictedUnpickler(f, load_storage, deferred_tensor).load()
    storages: dict[str, np.ndarray] = {}
    for key in _NoGlobals(f).load():
        dtype = dtypes[key]
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"storage {key} is truncated")
        (count,) = struct.unpack("<q", head)
        raw = f.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"storage {key} is truncated")
        storages[key] = _from_bytes(raw, dtype, "little")
    for view_key, (key, offset, view_size) in views.items():
        storages[view_key] = storages[key][offset : offset + view_size]
    return _resolve(obj, storages)


def _resolve(obj: Any, storages: dict[str, np.ndarray] | None = None) -> Any:
    """Replace deferred tensors and fastcore stand-ins by arrays and lists, recursively."""
    if isinstance(obj, _Deferred) and storages is not None:
        if obj.key not in storages:
            raise ValueError(f"storage {obj.key} is missing from the file")
        return _rebuild_tensor_v2(storages[obj.key], obj.storage_offset, obj.size, obj.stride)
    if isinstance(obj, FastcoreList):
        return [_resolve(x, storages) for x in obj.__dict__.get("items", [])]
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _resolve(value, storages)
        return out
    if isinstance(obj, list):
        return [_resolve(x, storages) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(x, storages) for x in obj)
    return obj


def load_pth(path: str | os.PathLike) -> Any:
    """Load a `.pth` file written by `torch.save`, without torch and without running its code.

    Args:
      path: the file, in the zip format (PyTorch >= 1.6) or the legacy one.

    Returns:
      The saved object with every tensor as a numpy array of its dtype and shape (parameters
      too); dicts, `OrderedDict`s, lists, tuples and scalars are kept, fastai's `L` becomes a
      list.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file is truncated or not a PyTorch file, or it refers to a global other
        than tensors and storages (the message names the global).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _resolve(_load_zip(archive))
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise ValueError("a truncated or damaged zip archive (the torch.save format)")
            f.seek(0)
            return _load_legacy(f)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    except Exception as error:
        raise ValueError(f"{path}: cannot read it as a PyTorch file: {error!r}") from error
