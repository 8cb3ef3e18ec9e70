"""MkDocs hooks: reference pages generated from the code, so they cannot fall behind it.

``<!-- settings -->`` becomes every ``Settings`` property of ``conf.py`` with its real default;
``<!-- drf-hooks -->`` the ``IdempotentAPIViewMixin`` attributes and ``get_idempotency_*`` hooks
(read from the source of ``core/policy.py`` and ``drf/mixins.py``, no Django set-up);
``<!-- changelog -->`` the repository's CHANGELOG.md.
"""

from __future__ import annotations

import ast
import inspect
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_idempotency"
_SECRET_KEY = "<the SECRET_KEY setting>"

# Defaults that are another Django setting's value: shown by name, since the docs build has no
# project settings (reading DERIVED_KEY_SECRET would need a SECRET_KEY).
FOLLOWS = {"DERIVED_KEY_SECRET": "the value of `SECRET_KEY`"}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    markdown = include_all(markdown)
    if "<!-- settings -->" in markdown:
        markdown = markdown.replace("<!-- settings -->", settings_reference())
    if "<!-- drf-hooks -->" in markdown:
        markdown = markdown.replace("<!-- drf-hooks -->", mixin_reference())
    if "<!-- changelog -->" in markdown:
        text = (ROOT / "CHANGELOG.md").read_text()
        # The page has its own title; the file's is dropped, its sections kept.
        body = text.split("\n", 1)[1] if text.startswith("# ") else text
        markdown = markdown.replace("<!-- changelog -->", body)
    return markdown


def settings_reference() -> str:
    from django.conf import settings

    if not settings.configured:
        # Django's defaults, so the defaults shown are the real ones; SECRET_KEY has none, and
        # IDEMPOTENCY_DERIVED_KEY_SECRET defaults to it: shown by name, never as a value.
        settings.configure(SECRET_KEY=_SECRET_KEY)
    from django_idempotency.conf import Settings

    sections = []
    current = Settings()
    for name, member in inspect.getmembers(Settings, lambda m: isinstance(m, property)):
        if not name.isupper():
            continue
        if not member.__doc__:
            raise ValueError(f"Settings.{name} has no docstring: the settings page needs one")
        doc = inspect.cleandoc(member.__doc__)
        sections.append(
            f"### `IDEMPOTENCY_{name}` {{#idempotency_{name.lower()}}}\n\n"
            f"Default: {FOLLOWS.get(name) or _shown(getattr(current, name))}\n\n{doc}\n"
        )
    return "\n".join(sections)


def _shown(value: Any) -> str:
    if value == _SECRET_KEY:
        return "the `SECRET_KEY` setting"
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
            if seconds % size == 0 and seconds >= size:
                return f"`timedelta({unit}={seconds // size})`"
        return f"`timedelta(seconds={value.total_seconds():g})`"
    if isinstance(value, frozenset | set):
        value = tuple(sorted(value))
    if isinstance(value, tuple | list):
        return " ".join(f"`{item}`" for item in value) or "empty"
    return f"`{value!r}`"


#: Where the DRF page's attributes and hooks are defined: every door's policy, then what the
#: DRF mixin adds or overrides (its own text wins).
MIXIN_SOURCES = (
    (PACKAGE / "core" / "policy.py", "HttpPolicy"),
    (PACKAGE / "drf" / "mixins.py", "IdempotentAPIViewMixin"),
)


def mixin_reference() -> str:
    attributes: dict[str, str] = {}
    hooks: dict[str, str] = {}
    for path, class_name in MIXIN_SOURCES:
        _read_class(path, class_name, attributes, hooks)
    if not attributes or not hooks:
        raise ValueError("IdempotentAPIViewMixin: no attributes or hooks found for the DRF page")
    return (
        "### Attributes\n\n| attribute | meaning |\n|---|---|\n"
        + "\n".join(attributes.values())
        + "\n\n### Hooks\n\nOverride them on the view for anything computed from the request.\n\n"
        + "| hook | what it returns |\n|---|---|\n"
        + "\n".join(hooks.values())
        + "\n"
    )


def _read_class(
    path: Path, class_name: str, attributes: dict[str, str], hooks: dict[str, str]
) -> None:
    """The ``idempotency_*`` attributes (documented by ``#:`` comments) and the
    ``get_idempotency_*`` hooks (by their docstrings) of ``class_name``, read without Django."""
    text = path.read_text()
    source = text.splitlines()
    mixin = next(
        node
        for node in ast.parse(text).body
        if isinstance(node, ast.ClassDef) and node.name == class_name
    )
    for node in mixin.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
            if not name.startswith("idempotency_"):
                continue
            # The "#:" comment lines right above the attribute are its documentation.
            comment = []
            line = node.lineno - 2
            while line >= 0 and source[line].strip().startswith("#:"):
                comment.insert(0, source[line].strip()[2:].strip())
                line -= 1
            if not comment:
                raise ValueError(f"{name} has no '#:' comment: the DRF page needs one")
            default = ast.unparse(node.value) if node.value is not None else ""
            attributes[name] = f"| `{name} = {default}` | {' '.join(comment)} |"
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("get_idempotency_"):
            arguments = ", ".join(a.arg for a in node.args.args[1:])
            doc = ast.get_docstring(node)
            if not doc:
                raise ValueError(f"{node.name} has no docstring: the DRF page needs one")
            summary = " ".join(doc.split("\n\n")[0].split())
            hooks[node.name] = f"| `{node.name}({arguments})` | {summary} |"


# ``<!-- include: PATH [NAME ...] -->``, on a line of its own, becomes the code of PATH (a file the
# test suite runs, such as the example project's), whole or only its top-level NAMEs
# (``Class.method``: one method), with the imports those use: the guides show code that runs.
INCLUDE = re.compile(r"^<!-- include: (.+?) -->$", re.MULTILINE)
#: Comments for the type checker, not for the reader.
_CHECKER_COMMENT = re.compile(r"\s*# (type: ignore\S*|noqa\S*)(?=\s*(#|$))")
_LANGUAGES = {".py": "python", ".html": "django", ".txt": "text"}


def include_all(markdown: str) -> str:
    """Every include of a page, in order; a name an earlier one showed counts as shown."""
    shown: dict[str, set[str]] = {}

    def one(match: re.Match[str]) -> str:
        path, *names = match.group(1).split()
        block = included(path, *names, shown_before=frozenset(shown.get(path, ())))
        shown.setdefault(path, set()).update(name.partition(".")[0] for name in names)
        return block

    return INCLUDE.sub(one, markdown)


def included(path: str, *names: str, shown_before: frozenset[str] = frozenset()) -> str:
    """A fenced block with ``path``'s code, or its ``names`` and the imports they use (the
    names in ``shown_before`` were shown earlier on the page)."""
    file = ROOT / path
    text = file.read_text()
    if names:
        text = _python_parts(text, names, shown_before)
    lines = [_CHECKER_COMMENT.sub("", line).rstrip() for line in text.strip().splitlines()]
    language = _LANGUAGES.get(file.suffix, "text")
    comment = f"{{# {path} #}}" if language == "django" else f"# {path}"
    return f"```{language}\n{comment}\n" + "\n".join(lines) + "\n```"


def _python_parts(text: str, names: tuple[str, ...], shown_before: frozenset[str]) -> str:
    source = text.splitlines()
    tree = ast.parse(text)
    defined: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            defined[node.name] = node
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            defined[node.targets[0].id] = node  # api = NinjaAPI(...)
    parts, used, needed = [], set(), set()
    for name in names:
        outer, _, method = name.partition(".")
        if outer not in defined:
            raise ValueError(f"include: {outer} is not defined at the top of that file")
        node = defined[outer]
        shown: list[ast.AST] = [node]
        if method:
            if not isinstance(node, ast.ClassDef):
                raise ValueError(f"include: {outer} is not a class")
            part, shown = _method_of(node, method, source)
            parts.append(part)
        else:
            parts.append("\n".join(source[_first_line(node) : node.end_lineno]))
        used |= {_root_name(n) for each in shown for n in ast.walk(each)} - {None}
        # A method's class statement is context (its bases were shown with the class); the
        # method's own body must be complete.
        needed |= {_root_name(n) for n in ast.walk(shown[-1])} - {None}
    # What the shown code uses from its own module must be shown too, or it cannot be pasted.
    shown = {name.partition(".")[0] for name in names} | shown_before
    missing = sorted((set(defined) & needed) - shown)
    if missing:
        raise ValueError(f"include: {', '.join(names)} use {', '.join(missing)}: include them")
    return _imports(tree, used) + "\n\n\n" + "\n\n\n".join(parts)


def _root_name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else None


def _imports(tree: ast.Module, used: set[str | None]) -> str:
    """The module's imports of the names in ``used``, its blank lines between groups kept."""
    lines: list[str] = []
    group, kept_group, previous_end = 0, None, None
    for node in tree.body:
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.module == "__future__":
            continue
        if previous_end is not None and node.lineno - previous_end > 1:
            group += 1
        previous_end = node.end_lineno
        kept = [a for a in node.names if (a.asname or a.name).split(".")[0] in used]
        if not kept:
            continue
        if kept_group is not None and group != kept_group:
            lines.append("")
        kept_group = group
        node.names = kept
        lines.append(ast.unparse(node))
    return "\n".join(lines)


def _first_line(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)]) - 1  # type: ignore[attr-defined]


def _method_of(cls: ast.ClassDef, name: str, source: list[str]) -> tuple[str, list[ast.AST]]:
    """The class statement, ``...`` for the rest of its body, and the one method."""
    method = next(
        (
            n
            for n in cls.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
        ),
        None,
    )
    if method is None:
        raise ValueError(f"include: {cls.name} has no method {name}")
    header = source[_first_line(cls) : cls.body[0].lineno - 1]
    body = source[_first_line(method) : method.end_lineno]
    shown: list[ast.AST] = [*cls.bases, method]
    return "\n".join([*header, "    ...", "", *body]), shown
