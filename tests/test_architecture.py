"""The architecture, as the code shows it: the kernel's direction, one writer of an action's
status, and no reach into frameworks' private internals. Read from the source with ``ast``,
so a new violation fails here the day it is written."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = tuple(
    name
    for name in ("config", "autonomy", "agents", "approvals", "workflows", "interventions",
                 "compliance", "reviews", "portal", "governance", "demo", "embedded")
    if (ROOT / name).is_dir()
)  # fmt: skip
# Caches of resources, not state passed between functions: requests' Session and sqlite3's
# connections are not shared between threads, so each thread keeps its own (a connector's
# HTTP pool; the demo systems' database).
THREAD_LOCAL_POOLS = {"autonomy/connectors/rest.py", "demo/systems/store.py"}
# Above the kernel: it reacts to nothing of theirs and imports none of them.
ABOVE_KERNEL = (
    "approvals", "workflows", "interventions", "compliance", "reviews", "portal", "governance",
    "demo", "config", "embedded",
)  # fmt: skip
FRAMEWORKS = ("django", "asgiref", "kombu", "billiard", "sqlite3", "celery", "rest_framework")
# Public despite the underscore: Django documents ``Model._meta`` (the Options API).
PUBLIC_UNDERSCORED = {"_meta"}


def _sources(*packages: str):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path, ast.parse(path.read_text(), filename=str(path))


def _imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node, node.module
            for alias in node.names:
                yield node, f"{node.module}.{alias.name}"


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def test_the_kernel_imports_no_app_above_it():
    found = [
        f"{_where(path, node)} imports {name}"
        for path, tree in _sources("autonomy")
        for node, name in _imported_modules(tree)
        if name.split(".")[0] in ABOVE_KERNEL
    ]
    assert found == []


def test_no_application_code_reaches_into_a_frameworks_private_names():
    found = []
    for path, tree in _sources(*APPS):
        framework_names = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in FRAMEWORKS:
                        framework_names[alias.asname or alias.name.split(".")[0]] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] in FRAMEWORKS:
                    for alias in node.names:
                        if alias.name.startswith("_"):
                            found.append(f"{_where(path, node)} imports {alias.name}")
                        framework_names[alias.asname or alias.name] = node.module
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in PUBLIC_UNDERSCORED:
                continue
            # ``x._private`` where ``x`` is a framework module or an object taken from one
            # (``connections._connections``, ``sqlite3.Cursor``'s, ``asyncio._get_...``).
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and (base.id in framework_names or base.id == "asyncio"):
                found.append(f"{_where(path, node)} reads {ast.unparse(node)}")
    assert found == []


def test_no_thread_local_state_in_application_code():
    found = [
        _where(path, node)
        for path, tree in _sources(*APPS)
        if path.relative_to(ROOT).as_posix() not in THREAD_LOCAL_POOLS
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("threading.local", "local")
    ]
    assert found == []


def _writes_action_status(tree: ast.AST):
    """Assignments of an ``ActionStatus`` to ``<x>.status``, ``update(status=...)`` and
    ``ActionRequest(..., status=...)`` calls."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = []
            for target in targets:
                flat.extend(target.elts if isinstance(target, ast.Tuple) else [target])
            value = ast.unparse(node.value) if node.value is not None else ""
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in flat) and (
                "ActionStatus" in value
            ):
                yield node
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            status_kw = any(k.arg == "status" for k in node.keywords)
            action_status = any(
                k.arg == "status" and "ActionStatus" in ast.unparse(k.value) for k in node.keywords
            )
            if action_status and func.endswith(".update"):
                yield node
            if status_kw and func in ("ActionRequest", "ActionRequest.objects.create"):
                yield node


# The demo seeds a day of history (rows that never lived through the lifecycle) in bulk.
@pytest.mark.parametrize("package", [p for p in APPS if p not in ("config", "demo")])
def test_only_the_action_lifecycle_writes_an_actions_status(package):
    found = [
        _where(path, node)
        for path, tree in _sources(package)
        if path.relative_to(ROOT).as_posix() != "autonomy/actions.py"
        for node in _writes_action_status(tree)
    ]
    assert found == []


# Known and reported: the kernel decides about agents (autonomy → agents.models), and the
# registry uses the kernel's error contract, audit trail and API conventions (agents →
# autonomy). Breaking it means a lower package for that shared contract; until then it is
# the one pair allowed, and a new one fails.
KNOWN_CYCLES = {("agents", "autonomy")}


def test_no_two_apps_import_each_other():
    """Between apps the arrows run one way: an app that acts on another (interventions on
    agents, approvals on the kernel) imports it, and is never imported back. A pair that
    imports each other is a cycle, however its modules are arranged."""
    arrows: dict[tuple[str, str], str] = {}
    for package in APPS:
        for path, tree in _sources(package):
            for node, name in _imported_modules(tree):
                target = name.split(".")[0]
                if target in APPS and target != package:
                    arrows.setdefault((package, target), _where(path, node))
    cycles = [
        f"{a} ⇄ {b}: {arrows[(a, b)]} and {arrows[(b, a)]}"
        for a, b in arrows
        if a < b and (b, a) in arrows and (a, b) not in KNOWN_CYCLES
    ]
    assert cycles == []
