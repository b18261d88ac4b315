"""The package's layout: three floors (pyproject.toml's import-linter contracts), no import
circle, a use floor that never loads the training stack, no code that only tests call; the suite
never skips a dependency."""

import ast
import glob
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import grimp

from tests.conftest import REPO


def test_the_import_contracts_hold():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    done = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def circles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(imports[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return found


def test_circles_finds_a_circle_and_only_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_in_a_circle():
    """Function-level imports count: grimp reads every import statement of every module."""
    graph = grimp.build_graph("amobilenet_jax")
    imports = {m: graph.find_modules_directly_imported_by(m) & graph.modules for m in graph.modules}
    assert circles(imports) == []


def test_predicting_loads_neither_optax_nor_orbax(python):
    """A photo in, an expression out: the use floor's modules, imported, leave the training stack unloaded."""
    code = (
        "import json, sys\n"
        "import amobilenet_jax.predict, amobilenet_jax.export, amobilenet_jax.visualize, amobilenet_jax.inference\n"
        "from amobilenet_jax.predict import pipeline\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('optax', 'orbax', 'clu')}"
        " | {m for m in sys.modules if m in ('amobilenet_jax.train', 'amobilenet_jax.steps', "
        "'amobilenet_jax.checkpoints')})\n"
        "print(json.dumps(loaded))\n"
    )
    done = subprocess.run([python, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_config_files_import_only_the_ground_floor():
    """configs/ builds experiments from the ground floor's config and recipes: a config file
    loads nothing from the training floor (pyproject.toml's last layer is the ground floor)."""
    import ast
    import glob
    import re

    with open(os.path.join(REPO, "pyproject.toml")) as f:
        layers = re.search(r"layers = \[(.*?)\]", f.read(), re.S).group(1)
    ground = {m.strip().strip('"') for m in layers.strip().rstrip(",").split("\n")[-1].split(":")}
    assert "amobilenet_jax.recipes" in ground and "amobilenet_jax.sweep" not in ground
    imported = {}
    for path in glob.glob(os.path.join(REPO, "configs", "*.py")):
        with open(path) as f:
            tree = ast.parse(f.read())
        names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported[os.path.basename(path)] = {n for n in names if n.startswith("amobilenet_jax")}
    assert imported and all(imported.values())
    outside = {f: sorted(m for m in mods if not any(m == g or m.startswith(g + ".") for g in ground))
               for f, mods in imported.items()}  # fmt: skip
    assert not any(outside.values()), outside


def contract_floors() -> list[set[str]]:
    """pyproject.toml's import-linter layers, top floor first, as module names under the package."""
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        block = f.read().split("\nlayers = [", 1)[1].split("\n]", 1)[0]
    return [
        {m.strip().removeprefix("amobilenet_jax.") for m in floor.split(":")}
        for floor in re.findall(r'"([^"]+)"', block)
    ]


def documented_floors() -> list[set[str]]:
    """docs/layout.md's tree of the package: the entry, then each ``# ... floor`` section's modules."""
    with open(os.path.join(REPO, "docs", "layout.md")) as f:
        tree = f.read().split("```\n", 2)[1]
    floors: list[set[str]] = [set()]
    for line in tree.splitlines():
        if re.match(r"  # \w+ floor", line):
            floors.append(set())
        elif entry := re.match(r"  (\w+)(?:\.py|/)\s", line):
            floors[-1].add(entry.group(1))
    return floors


def test_layout_doc_lists_every_module_on_its_floor():
    """docs/layout.md's floors are the contract's, and every module of the package is on one."""
    contract = contract_floors()
    assert [floor - {"assets"} for floor in documented_floors()] == contract  # assets/: data, not code
    assert package_modules() == set().union(*contract)


def package_modules() -> set[str]:
    """The package's top-level modules and subpackages."""
    package = os.path.join(REPO, "amobilenet_jax")
    modules = {name.removesuffix(".py") for name in os.listdir(package) if name.endswith(".py")} - {"__init__"}
    return modules | {
        name for name in os.listdir(package) if os.path.isfile(os.path.join(package, name, "__init__.py"))
    }


def test_tests_mirror_modules_as_the_layout_doc_says():
    """Each module's test is tests/test_<module>.py; docs/layout.md names where the others are
    tested, and what each test file not named for a module checks."""
    with open(os.path.join(REPO, "docs", "layout.md")) as f:
        prose = f.read().split("```\n", 2)[2]
    tests = {os.path.basename(p)[5:-3] for p in glob.glob(os.path.join(REPO, "tests", "test_*.py"))}
    modules = package_modules()
    for module in modules - tests:
        assert f"`{module}.py`" in prose or f"`{module}/`" in prose, module
    for test in tests - modules:
        assert f"`test_{test}.py`" in prose, test


def test_every_public_function_is_used_outside_the_tests():
    """A public function or class of the package is used by the package, its configs or its
    experiments' scripts (the Python API is imported by amobilenet_jax/__init__.py): none is kept
    only for the tests."""
    sources = [os.path.join(REPO, p) for p in ("amobilenet_jax/**/*.py", "configs/*.py", "experiments/**/*.py")]
    trees = {path: ast.parse(open(path).read()) for pattern in sources for path in glob.glob(pattern, recursive=True)}
    used = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.name.rsplit(".", 1)[-1])
    unused = [
        f"{os.path.relpath(path, REPO)}: {node.name}"
        for path, tree in trees.items()
        if os.path.relpath(path, REPO).startswith("amobilenet_jax")
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_") and node.name not in used
    ]
    assert sorted(unused) == []


def declared_dependencies() -> set[str]:
    """pyproject.toml's ``dependencies``, as normalised distribution names."""
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        block = f.read().split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-")
            for spec in re.findall(r'^\s*"([^"]+)"', block, re.M)}  # fmt: skip


def test_no_test_skips_when_a_dependency_fails_to_import():
    """A dependency that fails to import is a broken install: its tests fail, they do not skip."""
    dependencies = declared_dependencies()
    assert {"opencv-python-headless", "scikit-image", "onnxruntime", "jax"} <= dependencies
    distributions = importlib.metadata.packages_distributions()
    skipping = []
    for path in sorted(glob.glob(os.path.join(REPO, "tests", "*.py"))):
        with open(path) as f:
            text = f.read()
        for module in re.findall(r"""(?:importorskip|find_spec)\(\s*["']([\w.]+)""", text):
            names = {d.lower().replace("_", "-") for d in distributions.get(module.split(".")[0], [])}
            if names & dependencies:
                skipping.append(f"{os.path.basename(path)}: {module}")
    assert skipping == []
