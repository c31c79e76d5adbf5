"""The package's module import graph, its layers, the imports that point up a layer, and the longest functions.

Read from the source with `ast` (nothing is imported), so it runs on a tree that does not import cleanly:

    python scripts/import_graph.py                 # graph, upward imports, the 15 longest functions
    python scripts/import_graph.py --longest 40    # more functions
    python scripts/import_graph.py --over 80       # only functions longer than 80 lines

Every import counts, at the top of a module or inside a function: a nested import is a dependency all the same.
`LAYERS` is the one definition of the layers; `tests/test_layers.py` fails when a module imports a module of a
higher layer, and when an import inside a function has no reason comment (`unexplained_nested_imports`).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "writetune"
SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import modules of its own layer and of the layers below it, never above. A module
# belongs to the layer of the longest name listed that it is or lies in (`writetune.data.build` -> `writetune.data`);
# `writetune` itself stands for the package's `__init__` only, so a new top-level module must be placed here.
LAYERS: tuple[tuple[str, ...], ...] = (
    # shared foundations: configuration files, atomic writes, prompt formats, the task registry, small helpers
    ("writetune", "writetune.config", "writetune.atomic", "writetune.prompt", "writetune.tasks",
     "writetune.peak_memory", "writetune.markdown", "writetune.digest"),
    ("writetune.data",),  # corpora readers, tokenisation, mixes and the evaluation-set registry
    ("writetune.metrics",),
    ("writetune.models",),
    ("writetune.generate",),
    ("writetune.train",),
    # the results document and its rendering: what an evaluation writes, read by the runner, gather and the CLI
    ("writetune.results", "writetune.report"),
    ("writetune.evaluate",),  # the runner writes results.json and, through writetune.report, the report
    ("writetune.pipeline", "writetune.experiment"),
    ("writetune.gather",),  # reads the run and grid directories that pipeline and experiment lay out
    ("writetune.document_edit", "writetune.serve"),
    ("writetune.cli",),
)


@dataclass(frozen=True)
class Import:
    """One import of a package module: who imports what, at which line, and whether inside a function or class."""

    importer: str
    imported: str
    line: int
    nested: bool


@dataclass(frozen=True)
class Function:
    module: str
    name: str  # Class.method for methods
    line: int
    length: int  # lines, from the `def` (decorators excluded) to the last line of the body


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path, src): path for path in sorted((src / PACKAGE).rglob("*.py"))}


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, known: set[str]) -> str | None:
    """The longest package module that `name` is or lies in (`writetune.generate.X` -> `writetune.generate`)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(src: Path = SRC) -> list[Import]:
    """Every import of a package module by a package module."""
    found = modules(src)
    known = set(found)
    out: list[Import] = []
    for importer, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        nested_lines = {n.lineno for scope in ast.walk(tree)
                        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                        for n in ast.walk(scope) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, importer, path.name == "__init__.py")
                # `from writetune.data import evalsets` names a module; `from writetune.x import f` names x
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                           for alias in node.names]
            for target in dict.fromkeys(targets):
                resolved = _known(target, known)
                if resolved is not None and resolved != importer:
                    out.append(Import(importer, resolved, node.lineno, node.lineno in nested_lines))
    return sorted(out, key=lambda i: (i.importer, i.line, i.imported))


@dataclass(frozen=True)
class NestedImport:
    """An import statement inside a function, with its source line."""

    module: str
    line: int
    text: str


def unexplained_nested_imports(src: Path = SRC) -> list[NestedImport]:
    """The imports inside functions that give no reason for staying there.

    Imports belong at the top of a module; one inside a function says why on its own line (`import x  # reason`) or
    on the comment line just above it. A comment above covers the block of imports right under it.
    """
    out: list[NestedImport] = []
    for module, path in modules(src).items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), filename=str(path))
        nested = sorted({n for scope in ast.walk(tree) if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef))
                         for n in ast.walk(scope) if isinstance(n, (ast.Import, ast.ImportFrom))},
                        key=lambda n: n.lineno)
        explained: set[int] = set()  # last lines of the nested imports that carry or inherit a reason
        for node in nested:
            first, last = node.lineno, node.end_lineno
            above = lines[first - 2].strip() if first > 1 else ""
            has_reason = any("#" in lines[i - 1] for i in range(first, last + 1)) or above.startswith("#") \
                or (first - 1) in explained
            if has_reason:
                explained.add(last)
            else:
                out.append(NestedImport(module, first, lines[first - 1].strip()))
    return out


def layer(module: str) -> int:
    """The index in LAYERS of the module's layer (the longest listed prefix)."""
    best, best_length = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            inside = module.startswith(name + ".") and name != PACKAGE
            if (module == name or inside) and len(name) > best_length:
                best, best_length = index, len(name)
    if best is None:
        raise ValueError(f"module {module} is in no layer of scripts/import_graph.py's LAYERS")
    return best


def upward_imports(src: Path = SRC) -> list[Import]:
    """The imports of a module of a higher layer than the importer's."""
    return [i for i in imports(src) if layer(i.imported) > layer(i.importer)]


def functions(src: Path = SRC) -> list[Function]:
    """Every function and method of the package, longest first."""
    out: list[Function] = []
    for module, path in modules(src).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = prefix + child.name
                    out.append(Function(module, name, child.lineno, child.end_lineno - child.lineno + 1))
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")

        visit(tree, "")
    return sorted(out, key=lambda f: (-f.length, f.module, f.line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--longest", type=int, default=15, help="how many of the longest functions to list")
    parser.add_argument("--over", type=int, default=None, help="list every function longer than this many lines")
    args = parser.parse_args(argv)
    found = imports()
    by_importer: dict[str, list[Import]] = {}
    for item in found:
        by_importer.setdefault(item.importer, []).append(item)
    print("# import graph (module [layer] -> imported modules; ~ marks an import inside a function)")
    for module in modules():
        targets = dict.fromkeys(("~" if i.nested else "") + i.imported for i in by_importer.get(module, []))
        print(f"{module} [{layer(module)}] -> {', '.join(targets) or '(none)'}")
    upward = [i for i in found if layer(i.imported) > layer(i.importer)]
    print(f"\n# upward imports ({len(upward)})")
    for item in upward:
        where = "inside a function" if item.nested else "at the top"
        print(f"{item.importer}:{item.line} imports {item.imported} ({where}; layer {layer(item.importer)} -> "
              f"{layer(item.imported)})")
    listed = functions()
    listed = [f for f in listed if f.length > args.over] if args.over is not None else listed[: args.longest]
    print(f"\n# longest functions ({len(listed)})")
    for function in listed:
        print(f"{function.length:5d}  {function.module}:{function.line}  {function.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
