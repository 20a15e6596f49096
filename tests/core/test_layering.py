"""The package's layers: a core that needs only torch, torchvision and timm, the OpenMMLab layer
(``fastervit_dense.mm``) on top, and no import cycle anywhere."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, 'fastervit_dense')
OPENMMLAB = ('mmengine', 'mmcv', 'mmdet', 'mmseg')
#: Subpackages that are not the core: the OpenMMLab layer, and what tests and tools share.
NOT_CORE = ('fastervit_dense.mm', 'fastervit_dense.testing')


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-len('.py')].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def package_modules() -> dict:
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                modules[module_name(path)] = path
    return modules


def imports_of(name: str, path: str) -> set:
    """Every module ``name`` imports, at any level (module, function, class), made absolute."""
    tree = ast.parse(open(path).read())
    package = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # ``from . import mm`` imports a module, not a name.
            found.update(f'{target}.{alias.name}' for alias in node.names)
    return found


def internal_graph() -> dict:
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(name, path) if m in modules and m != name}
    return graph


def test_no_import_cycle_counting_imports_inside_functions():
    graph = internal_graph()
    # A package's __init__ runs before its submodules; importing one's own parent is not a cycle.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + '.')}
    visiting, done, cycles = set(), set(), []

    def visit(node, trail):
        if node in done:
            return
        if node in visiting:
            cycles.append(trail[trail.index(node):] + [node])
            return
        visiting.add(node)
        for nxt in sorted(graph[node]):
            visit(nxt, trail + [node])
        visiting.discard(node)
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert not cycles, ' ; '.join(' -> '.join(c) for c in cycles)


def test_core_modules_never_import_openmmlab_or_the_layers_above():
    offending = []
    for name, path in package_modules().items():
        if name.startswith(NOT_CORE):
            continue
        for imported in imports_of(name, path):
            top = imported.split('.')[0]
            if top in OPENMMLAB or imported.startswith(NOT_CORE) or top == 'fastervit':
                offending.append(f'{name} imports {imported}')
    # The package's __init__ loads the OpenMMLab layer only when mmdet or mmseg is already loaded.
    allowed = {'fastervit_dense imports fastervit_dense.mm'}
    assert set(offending) <= allowed, offending


def test_openmmlab_is_absent_from_the_core_environment():
    """In the core's own environment (``make test`` runs tests/core there) no OpenMMLab package is
    installed at all; in the full one this says which it has. With OpenMMLab installed, using the
    core still loads none of it: tests/mm/test_core_beside_openmmlab.py."""
    import importlib.util
    present = [m for m in OPENMMLAB if importlib.util.find_spec(m) is not None]
    if os.path.basename(sys.prefix).startswith('.venv-core'):
        assert present == []
    else:
        pytest.skip(f'full environment (has {", ".join(present) or "none"})')


#: What the core may import: the standard library, the core's requirements (setup.py's
#: CORE_REQUIRES, by import name) and, inside the functions that need them, the deploy extra's.
CORE_IMPORTS = {'torch', 'torchvision', 'timm', 'safetensors', 'huggingface_hub', 'filelock', 'tqdm',
                'onnx', 'onnxruntime', 'numpy', 'fastervit_dense'}


@pytest.mark.subprocess
def test_the_wheel_holds_the_kit_without_test_helpers_and_the_core_needs_only_its_requirements(
        tmp_path):
    import shutil
    import zipfile
    source = tmp_path / 'source'  # built from a copy: setuptools writes build/ into the tree
    shutil.copytree(PACKAGE, source / 'fastervit_dense',
                    ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('setup.py', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), source / name)
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                             '--no-build-isolation', '-q', '-w', str(tmp_path), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel, ) = tmp_path.glob('fastervit_dense-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    assert 'fastervit_dense/mm/synthetic.py' in names and 'fastervit_dense/hub.py' in names
    assert not any(n.startswith('fastervit_dense/testing/') for n in names), names
    offending = []
    for name in names:
        if not name.endswith('.py') or name.startswith('fastervit_dense/mm/'):
            continue
        module = name[:-len('.py')].replace('/', '.')
        for imported in imports_of(module, os.path.join(ROOT, name)):
            top = imported.split('.')[0]
            if top not in CORE_IMPORTS and top not in sys.stdlib_module_names:
                offending.append(f'{module} imports {imported}')
    assert offending == []


def test_the_library_parses_no_arguments_prints_nothing_and_names_no_repository_folder():
    """Commands live in tools/ (thin scripts over library functions that return text or raise);
    the package, installed as a wheel, has no configs/ or tools/ beside it to point at."""
    found = []
    for name, path in package_modules().items():
        tree = ast.parse(open(path).read())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                                           ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == 'print':
                found.append(f'{name}:{node.lineno} print')
            if isinstance(node, ast.Attribute) and node.attr == 'ArgumentParser':
                found.append(f'{name}:{node.lineno} ArgumentParser')
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) \
                    and node.left.id == '__name__':
                found.append(f'{name}:{node.lineno} __main__')
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings \
                    and node.value.startswith(('configs/', 'tools/', 'tests/')):
                found.append(f'{name}:{node.lineno} {node.value!r}')
    assert not found, found
