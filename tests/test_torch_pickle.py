"""Reading `.pth` files without torch: `ulmfit_jax.weights.torch_pickle` against `torch.load`."""

import collections
import os
import textwrap

import numpy as np
import pytest
from conftest import run_python

from ulmfit_jax.weights import fastai as fastai_weights
from ulmfit_jax.weights.torch_pickle import load_pth

torch = pytest.importorskip("torch")

ATOL = 1e-4  # the tolerance of tests/test_fastai_parity.py


def assert_same(ours, theirs, where="root"):
    """`ours` (numpy) holds the same values, dtypes, shapes and structure as `theirs` (torch)."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, np.ndarray), where
        want = theirs.detach()
        if want.dtype == torch.bfloat16:
            assert str(ours.dtype) == "bfloat16", where
            want = want.float()
            ours = ours.astype(np.float32)
        else:
            assert ours.dtype == want.numpy().dtype, where
        np.testing.assert_array_equal(ours, want.numpy(), err_msg=where)
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) or isinstance(ours, dict), where
        assert list(ours) == list(theirs), where
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, where


def awkward_state():
    """Tensors torch stores as views: transposed, offset into a shared storage, 0-d, empty."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    shared = torch.arange(20, dtype=torch.int64)
    model = collections.OrderedDict(
        [
            ("0.encoder.weight", torch.randn(7, 4, generator=gen)),
            ("transposed", base.t()),
            ("offset_rows", base[2:5]),
            ("strided_columns", base[:, 1::2]),
            ("shared_a", shared[3:9]),
            ("shared_b", shared[10:].view(2, 5)),
            ("half", torch.randn(3, 2, generator=gen).half()),
            ("bfloat16", torch.randn(4, generator=gen).bfloat16()),
            ("int32", torch.tensor([1, -2, 3], dtype=torch.int32)),
            ("bool", torch.tensor([True, False])),
            ("uint8", torch.tensor([0, 255], dtype=torch.uint8)),
            ("double", torch.randn(2, 2, generator=gen).double()),
            ("scalar", torch.tensor(3.5)),
            ("empty", torch.zeros(0, 3)),
            ("param", torch.nn.Parameter(torch.randn(2, 3, generator=gen))),
            ("nested", collections.OrderedDict([("inner", torch.ones(2, dtype=torch.int64))])),
        ]
    )
    opt = {
        "state": [{"step": 3, "avg": torch.zeros(2, 3)}, {}],
        "hypers": [{"lr": 1e-3, "mom": 0.9, "betas": (0.9, 0.99)}],
    }
    return {"model": model, "opt": opt}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_save_loads_equal_to_torch_load(tmp_path, zip_format):
    state = awkward_state()
    path = tmp_path / "weights.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    ours = load_pth(path)
    theirs = torch.load(path, weights_only=True)
    assert_same(ours, theirs)
    assert isinstance(ours["model"], collections.OrderedDict)
    # Each array owns its memory: writing to one view does not change another.
    ours["model"]["shared_a"][0] = -1
    assert ours["model"]["shared_b"][0, 0] == 10


def test_state_dict_of_a_module_with_metadata(tmp_path):
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    path = tmp_path / "module.pth"
    torch.save(module.state_dict(), path)
    assert_same(load_pth(path), torch.load(path, weights_only=True))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_that_calls_os_system_is_refused(tmp_path, monkeypatch, zip_format):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "x": RunsCode()}, path,
               _use_new_zipfile_serialization=zip_format)  # fmt: skip
    with pytest.raises(ValueError, match=r"global (posix|os|nt)\.system"):
        load_pth(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_plain_pickle_that_calls_os_system_is_refused(tmp_path, monkeypatch):
    import pickle

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(ValueError, match=r"(posix|os|nt)\.system"):
        load_pth(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_truncated_files_are_named(tmp_path, fixtures_dir):
    data = (fixtures_dir / "fastai" / "lm.pth").read_bytes()
    for cut in (len(data) // 2, 100):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.pth"):
            load_pth(path)
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(100)}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-50])
    with pytest.raises(ValueError, match="legacy.pth.*truncated"):
        load_pth(legacy)
    with pytest.raises(FileNotFoundError):
        load_pth(tmp_path / "absent.pth")


def test_fastai_fixtures_equal_torch(fixtures_dir):
    """The committed fastai files (Learner.save layout with fastcore's L, and plain ones)."""
    for name in ["lm.pth", "lm_v1.pth", "classifier.pth"]:
        path = fixtures_dir / "fastai" / name
        # lm.pth holds fastcore's L: torch needs the stand-in to unpickle it without fastcore.
        with torch.serialization.safe_globals([_fastcore_stand_in()]):
            theirs = torch.load(path, weights_only=True)
        theirs = theirs.get("model", theirs)
        assert_same(fastai_weights.read_state_dict(path), dict(theirs), name)


def _fastcore_stand_in():
    class L:
        def __setstate__(self, state):
            self.__dict__.update(state if isinstance(state, dict) else {"items": state})

    L.__module__, L.__qualname__ = "fastcore.foundation", "L"
    return L


CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import json, numpy as np
    import ulmfit_jax
    root, out = sys.argv[1], sys.argv[2]
    params, config, vocab = ulmfit_jax.load_fastai_lm(root + "/lm.pth", root + "/lm_itos.pkl")
    expected = np.load(root + "/expected.npz")
    tokens = expected["lm_tokens"]
    logits, _ = ulmfit_jax.lm_apply(params, config, tokens)
    np.save(out, np.asarray(logits))
    try:
        import torch  # noqa: F401
        imported = True
    except ImportError:
        imported = False
    print(json.dumps({"torch_imported": imported, "vocab": len(vocab),
                      "torch_in_modules": sys.modules.get("torch") is not None}))
    """
)


def test_fastai_lm_loads_without_torch(tmp_path, fixtures_dir):
    root = fixtures_dir / "fastai"
    out = tmp_path / "logits.npy"
    report = run_python(CHILD, str(root), str(out))
    assert report == {"torch_imported": False, "vocab": 48, "torch_in_modules": False}
    without_torch = np.load(out)

    # The numbers the parity tests check: fastai's own logits over three stateful batches.
    expected = np.load(root / "expected.npz")
    fastai_logits = np.concatenate(list(expected["lm_logits"]), axis=1)
    np.testing.assert_allclose(without_torch, fastai_logits, atol=ATOL, rtol=0)

    # And the logits of the same weights read by torch itself.
    import ulmfit_jax

    with torch.serialization.safe_globals([_fastcore_stand_in()]):
        state = torch.load(root / "lm.pth", weights_only=True)["model"]
    params, config = fastai_weights.lm_params_from_state_dict(
        {k: v.numpy() for k, v in state.items()}
    )
    with_torch, _ = ulmfit_jax.lm_apply(params, config, expected["lm_tokens"])
    np.testing.assert_allclose(without_torch, with_torch, atol=1e-6, rtol=0)
