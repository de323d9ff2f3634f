"""Comments say why; figures live in bench/ (bench/DECISIONS.md and the results files), to be re-measured there."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cds_service"
FIGURE = re.compile(r"\d[\d.,]*\s?(ms|us|µs|ns|million|instructions|requests/s)\b")


def _comments_and_docstrings(path: Path):
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.COMMENT or (token.type == tokenize.STRING
                                              and token.string.lstrip("rbuRBU").startswith(('"""', "'''"))):
            for offset, line in enumerate(token.string.splitlines()):
                yield token.start[0] + offset, line


def test_no_benchmark_figure_in_a_comment_or_docstring():
    found = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) for number, line in _comments_and_docstrings(path)
             if FIGURE.search(line)]
    assert found == [], "benchmark figures belong in bench/DECISIONS.md:\n" + "\n".join(found)


def test_the_check_finds_a_figure():
    assert FIGURE.search("# about 20 ms on first use") and FIGURE.search("costs 8-17 us")
    assert not FIGURE.search("# HbA1c of 8.0 % and above") and not FIGURE.search("# at most 16 KB per key")


def _module_imports() -> dict[str, set[str]]:
    """Each module's module-level imports of other cds_service modules (TYPE_CHECKING blocks aside)."""
    import ast  # noqa: PLC0415

    modules = {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
               for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cds_service"):
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles: list[str] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append(" -> ".join([*path[path.index(imported):], imported]))
            elif imported not in done:
                visit(imported, [*path, imported])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return cycles


def test_no_import_cycle_between_modules():
    """The request path reads one way (HTTP, request, services, patient data, record, facts, rules, cards): a module
    that imports one importing it back would blur which layer owns what."""
    graph = _module_imports()
    assert "cds_service.clinical.facts" in graph["cds_service.clinical.rules"]  # the check reads imports at all
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]  # and finds one when there is
