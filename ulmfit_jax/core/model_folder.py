"""One self-contained folder per model: what `save_pretrained` writes and `from_pretrained` reads.

    FOLDER/config.json         what the model is: its kind, hyperparameters, labels, tokenizer
                               record, metrics, and the library (name, version, format version)
    FOLDER/model.safetensors   the parameters, one tensor per leaf, keys joined by "." (no pickle)
    FOLDER/vocab.json          the vocabulary, a list of tokens (index = id), when the model has one
    FOLDER/README.md           the model card (see the family's writer)

The format is family-agnostic: a family passes its parameter tree and a JSON-able `config`
(the same metadata its orbax export keeps) and reads back `(params, config)`, checking the
tree against a template built from the config. A folder is written to a temporary sibling and
renamed into place, so a killed write never leaves a folder that looks complete, and an
existing folder is replaced only when it is one of ours and `overwrite=True`.

`from_pretrained` takes a local folder or `hf://owner/repo[@revision]` (through
`huggingface_hub`, whose cache it shares with other libraries); `push_to_hub` uploads a folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ulmfit_jax.core import nested

LIBRARY = "ulmfit-jax"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, VOCAB, CARD = "config.json", "model.safetensors", "vocab.json", "README.md"


def library_version() -> str:
    try:
        return metadata.version(LIBRARY)
    except metadata.PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"


def flatten(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A nested dict of arrays as `{"a.b.c": array}` (safetensors stores flat names)."""
    return nested.flatten(tree, leaf=lambda value: np.ascontiguousarray(np.asarray(value)))


unflatten = nested.unflatten


def _is_ours(folder: Path) -> bool:
    try:
        return json.loads((folder / CONFIG).read_text()).get("library") == LIBRARY
    except (OSError, ValueError):
        return False


def save_folder(
    folder: str | Path,
    params: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    vocab: list[str] | None = None,
    card: str = "",
    extra_files: Mapping[str, bytes] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder (module docstring); returns its path. `extra_files` are written
    beside the others (e.g. an exported function), by name.

    Raises:
      FileExistsError: `folder` exists and is not empty, unless it is a model folder of this
        library and `overwrite` is set (nothing else is ever replaced).
    """
    from safetensors.numpy import save_file

    folder = Path(folder).absolute()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not (folder.is_dir() and _is_ours(folder)):
            raise FileExistsError(
                f"{folder} exists and is not a {LIBRARY} model folder: choose another folder "
                "(nothing was written)"
            )
        if not overwrite:
            raise FileExistsError(
                f"{folder} already holds a model: pass overwrite=True to replace it"
            )
    record = dict(config)
    record.update(library=LIBRARY, library_version=library_version(), format=FORMAT_VERSION)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        save_file(flatten(params), str(tmp / WEIGHTS), metadata={"format": "np"})
        (tmp / CONFIG).write_text(json.dumps(record, indent=2, sort_keys=True, default=float))
        if vocab is not None:
            (tmp / VOCAB).write_text(json.dumps(list(vocab), ensure_ascii=False))
        if card:
            (tmp / CARD).write_text(card)
        for name, content in (extra_files or {}).items():
            (tmp / name).write_bytes(content)
        if folder.exists():  # ours, and overwrite was asked for: swap it out
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def resolve(name_or_folder: str | Path) -> Path:
    """A local folder for `name_or_folder`: a folder as it is, `hf://owner/repo[@revision]`
    downloaded (or found in the Hugging Face cache) by `huggingface_hub`."""
    text = str(name_or_folder)
    if text.startswith("hf://"):
        repo, _, revision = text[len("hf://") :].partition("@")
        try:
            from huggingface_hub import snapshot_download
        except ImportError as error:
            raise ImportError(
                f"{text}: Hugging Face addresses need huggingface_hub: "
                "pip install 'ulmfit-jax[hub]'"
            ) from error
        return Path(snapshot_download(repo_id=repo, revision=revision or None))
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    return folder


def load_folder(
    name_or_folder: str | Path,
    make_template: Callable[[dict], Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], list[str] | None]:
    """`(params, config, vocab)` of a model folder (or address, see `resolve`).

    `make_template(config)` builds parameters of the expected structure and shapes (e.g.
    `init_lm_params` for the config's model); the file must match it leaf for leaf.

    Raises:
      FileNotFoundError: a file the folder must hold is missing.
      ValueError: not this library's folder, a newer format, or tensors that disagree with the
        config, each naming what is wrong.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = resolve(name_or_folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a complete model folder: {name} is missing")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except ValueError as error:
        raise ValueError(f"{folder / CONFIG} is not valid JSON: {error}") from error
    if config.get("library") != LIBRARY:
        raise ValueError(
            f"{folder} holds a model of {config.get('library')!r}, not {LIBRARY!r}: "
            "its config.json has no library entry of ours"
        )
    if int(config.get("format", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{folder} was written by {LIBRARY} {config.get('library_version')} in format "
            f"{config['format']}; this version ({library_version()}) reads format "
            f"{FORMAT_VERSION} and older: upgrade {LIBRARY}"
        )
    try:
        params = unflatten(load_file(str(folder / WEIGHTS)))
    except SafetensorError as error:
        raise ValueError(
            f"{folder / WEIGHTS} is not a readable safetensors file: {error}"
        ) from error
    if make_template is not None:
        _check_against(params, make_template(config), folder)
    vocab = None
    if (folder / VOCAB).is_file():
        vocab = json.loads((folder / VOCAB).read_text())
    return params, config, vocab


def _shapes(tree: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """`{"a.b": shape}` of a tree of arrays or of `jax.ShapeDtypeStruct`s."""
    shapes = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            shapes.update(_shapes(value, name + "."))
        else:
            shapes[name] = tuple(np.shape(value) if not hasattr(value, "shape") else value.shape)
    return shapes


def _check_against(params: Mapping[str, Any], template: Mapping[str, Any], folder: Path) -> None:
    got, want = _shapes(params), _shapes(template)
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(
            f"{folder / WEIGHTS} does not match its config.json: missing {missing[:5]}, "
            f"unexpected {extra[:5]}"
        )
    for name, shape in want.items():
        if got[name] != shape:
            raise ValueError(
                f"{folder / WEIGHTS}: {name} has shape {got[name]} but the config.json's "
                f"model needs {shape}"
            )


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload model",
) -> str:
    """Upload a model folder to the Hugging Face Hub (creating the repository if needed);
    returns the `hf://` address that `from_pretrained` reads."""
    folder = Path(folder)
    if not _is_ours(folder):
        raise ValueError(f"{folder} is not a {LIBRARY} model folder (no config.json of ours)")
    try:
        from huggingface_hub import HfApi
    except ImportError as error:
        raise ImportError(
            "push_to_hub needs huggingface_hub: pip install 'ulmfit-jax[hub]'"
        ) from error
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=commit_message
    )
    return f"hf://{repo_id}" + (f"@{revision}" if revision else "")
