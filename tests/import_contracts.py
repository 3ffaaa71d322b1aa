"""An import-linter contract type of this project's (``[tool.importlinter]`` in pyproject.toml).

``private_names``: no module of ``packages`` imports a private name (one starting with a single
underscore) from another module of those packages, at any level of the file (functions included).
A private name is its module's own business; what another module needs is made public first.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def private_imports(module: str, path: Path, packages: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """``(line, imported module, name)`` for each private name ``module`` (at ``path``) imports from
    another module of ``packages``."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        if not source.startswith(packages) or source == module:
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append((node.lineno, source, alias.name))
    return found


def module_path(module: str) -> Path | None:
    """The source file of ``module``, found from its top package's folder without importing any of
    its subpackages (whose ``__init__`` may need Django's settings)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent.joinpath(*rest)
    for candidate in (folder / "__init__.py", folder.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


class PrivateNamesContract(Contract):
    type_name = "private_names"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        packages = tuple(str(package) for package in self.packages)  # type: ignore[attr-defined]
        violations = []
        for module in sorted(graph.modules):
            path = module_path(module)
            if not module.startswith(packages) or path is None:
                continue
            for line, source, name in private_imports(module, path, packages):
                violations.append(f"{module}:{line} imports {name} from {source}")
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            output.print_error(violation, bold=False)
            output.new_line()
