"""The import directions of docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "enkrypt_async"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports at run time, inside functions too."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("enkrypt"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("enkrypt_async"):
                found.add(target)
                # `from .pkg import module` imports a module, not a name.
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    if candidate in MODULES:
                        found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found - {name}


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_itself_back_through_others(module: str) -> None:
    # A submodule may run its package's __init__ (it is importing it); any
    # other way back to itself is a cycle.
    back = {
        name
        for name in GRAPH[module]
        if name not in _ancestors(module) and module in _reachable(name)
    }
    assert not back, f"{module} -> {sorted(back)} -> ... -> {module}"


def _runtime_deps(module: str) -> set[str]:
    return {name for name in GRAPH[module] if name not in _ancestors(module)}


def test_the_models_stand_alone() -> None:
    for name in MODULES:
        if name.startswith("enkrypt_async._models"):
            outside = {
                dep
                for dep in _runtime_deps(name)
                if not dep.startswith("enkrypt_async._models")
            }
            assert not outside, f"{name} imports {outside}"


def test_the_sse_decoder_imports_only_the_errors() -> None:
    assert _runtime_deps("enkrypt_async._sse") == {"enkrypt_async._exceptions"}
    assert "aiohttp" not in PACKAGE.joinpath("_sse.py").read_text()


def test_the_pipeline_and_the_stream_import_no_resource_and_no_client() -> None:
    for name in ("enkrypt_async._base_client", "enkrypt_async._streaming"):
        for dep in _reachable(name):
            assert not dep.startswith("enkrypt_async._resources"), (name, dep)
            assert dep != "enkrypt_async._client", name


def test_a_resource_imports_no_other_resource_and_not_the_client() -> None:
    resources = [n for n in MODULES if n.startswith("enkrypt_async._resources.")]
    assert resources
    for name in resources:
        for dep in _runtime_deps(name):
            assert not dep.startswith("enkrypt_async._resources."), (name, dep)
            assert dep != "enkrypt_async._client", name


#: The layers on top of the core: they import it, never the other way.
TOP = ("enkrypt_async.testing", "enkrypt_async.cli", "enkrypt_async.fastapi")


def test_the_core_never_imports_the_testing_tools_the_command_line_or_fastapi() -> None:
    for name in MODULES:
        if name.startswith(TOP) or name == "enkrypt_async.__main__":
            continue
        for dep in _reachable(name):
            assert not dep.startswith(TOP), (name, dep)


def test_the_fastapi_integration_uses_public_names_only() -> None:
    assert _runtime_deps("enkrypt_async.fastapi") <= {"enkrypt_async"}


def test_nothing_imports_the_opentelemetry_instrumentation() -> None:
    for name in MODULES:
        if name != "enkrypt_async.otel":
            assert "enkrypt_async.otel" not in _reachable(name), name


#: What the OpenTelemetry instrumentation may import beyond the public names.
#: Unlike the FastAPI integration it cannot keep to them: it wraps the request
#: pipeline's private methods (`BaseClient._request`, `_stream`, `_attempt`,
#: `Stream._close`) at class level while instrumented, and reads request ids as
#: the pipeline does. So it reaches exactly the modules that define those.
OTEL_PRIVATE_DEPS = {"enkrypt_async._base_client", "enkrypt_async._responses"}


def test_the_instrumentation_imports_public_names_and_the_pipeline() -> None:
    assert _runtime_deps("enkrypt_async.otel") <= {"enkrypt_async", *OTEL_PRIVATE_DEPS}
