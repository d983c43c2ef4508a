"""The package layout's promises: one shared core importing neither family, no import circles,
ELMo without ULMFiT, inference without training, entry points only in train/."""

import ast
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("ulmfit_jax", "elmo_jax")
# What the shared core must never import: either family's own code.
FAMILY = ("elmo_jax",) + tuple(
    f"ulmfit_jax.{p}"
    for p in ("models", "text", "batching", "optim", "stages", "weights", "inference")
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (module level or inside functions)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
                names = [n if n in modules else node.module for n in names]
            else:
                continue
            targets.update(n for n in names if n in modules and n != name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle_anywhere():
    graph = import_graph()
    assert len(graph) > 60
    assert find_cycle(graph) is None, find_cycle(graph)


def test_shared_core_imports_neither_family():
    for name, targets in import_graph().items():
        if name.startswith("ulmfit_jax.core"):
            bad = sorted(t for t in targets if t.startswith(FAMILY))
            assert not bad, f"{name} imports {bad}"


def loaded_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_import_elmo_loads_no_ulmfit_model_code():
    modules = loaded_after("import elmo_jax; elmo_jax.bilm_apply; elmo_jax.load_allennlp")
    ulmfit = [m for m in modules if m.startswith("ulmfit_jax")]
    assert not [m for m in ulmfit if m.startswith(FAMILY)], ulmfit
    assert "elmo_jax.model.bilm" in modules


def test_inference_imports_no_training_code():
    modules = loaded_after(
        "from ulmfit_jax.inference.predictor import Predictor\n"
        "from ulmfit_jax.weights.export import load_export"
    )
    training = [
        m
        for m in modules
        if m.startswith(("ulmfit_jax.stages", "ulmfit_jax.optim", "ulmfit_jax.core.runner.run"))
    ]
    assert not training and "optax" not in modules, training


def test_train_holds_only_entry_points_and_configs():
    entries = {p.name for p in (ROOT / "train").glob("*.py")}
    assert entries == {
        "__init__.py",
        "demo.py",
        "elmo.py",
        "elmo_downstream.py",
        "elmo_tagger.py",
        "reproduce.py",
        "ulmfit.py",
    }
    assert not list((ROOT / "train").rglob("bench*"))


def test_reading_a_csv_imports_no_tensorflow_datasets(tmp_path):
    """Local files are read directly: TFDS is imported only by the TFDS reader."""
    rows = ["text,label"] + [f"document {i},{'pos' if i % 2 else 'neg'}" for i in range(20)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    spec = (
        "from ulmfit_jax.core.data.spec import DataSpec\n"
        f"spec = DataSpec(source='local', format='csv', path={str(tmp_path)!r}, "
        "label_field='label')\n"
    )
    modules = loaded_after(
        spec + "from ulmfit_jax.core.data.readers import open_split\n"
        "assert len(open_split(spec, 'train')) == 20"
    )
    assert "tensorflow_datasets" not in modules
    assert "ulmfit_jax.core.data.tables" in modules
    # The classify stage's whole data path: its module, the splits and the label encoder.
    modules = loaded_after(
        spec + "from ulmfit_jax.stages.classifier_stage import classify_stage\n"
        "from ulmfit_jax.core.data.classification import load_classification\n"
        "data = load_classification(spec, seed=0)\n"
        "assert len(data.train) == 18 and data.encoder.names == ('neg', 'pos')"
    )
    assert "tensorflow_datasets" not in modules
    assert "ulmfit_jax.stages.classifier_stage" in modules


def test_no_two_packages_share_a_name():
    """A family package named `data` beside `core/data` read as one thing: each name once."""
    for package in PACKAGES:
        names = [p.parent.name for p in (ROOT / package).rglob("__init__.py")]
        names = [n for n in names if n != package]
        assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_predicting_and_embedding_import_no_tensorflow_datasets(tmp_path):
    """What serving a model needs: a classifier's predictions and `elmo-jax embed`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from elmo_fixtures import tiny_config
    from model_fixtures import write_classifier_export

    from elmo_jax.weights.allennlp import write_random_weights

    vocab = ["xxunk", "xxpad", "xxbos", "a", "fine", "film", "."]
    write_classifier_export(tmp_path / "clf", vocab, ["neg", "pos"])
    modules = loaded_after(
        "from ulmfit_jax.inference.predictor import Predictor\n"
        f"p = Predictor.from_workdir({str(tmp_path / 'clf')!r})\n"
        "assert p.predict(['A fine film.']).shape == (1, 2)"
    )
    assert "tensorflow_datasets" not in modules
    write_random_weights(tiny_config(), tmp_path / "w.hdf5", tmp_path / "o.json")
    (tmp_path / "s.txt").write_text("The cat sat .\n")
    args = ["embed", "--options", tmp_path / "o.json", "--weights", tmp_path / "w.hdf5"]
    args += [tmp_path / "s.txt", tmp_path / "out.hdf5"]
    modules = loaded_after(
        f"from elmo_jax.__main__ import main\nassert main({list(map(str, args))!r}) == 0"
    )
    assert "tensorflow_datasets" not in modules and (tmp_path / "out.hdf5").is_file()
