"""MkDocs hooks: reference pages generated from the code, so they cannot fall behind it.

``<!-- settings -->`` becomes every ``Settings`` property of ``conf.py`` with its real default;
``<!-- drf-hooks -->`` the ``IdempotentAPIViewMixin`` attributes and ``get_idempotency_*`` hooks
(read from the source of ``core/policy.py`` and ``drf/mixins.py``, no Django set-up);
``<!-- changelog -->`` the repository's CHANGELOG.md.
"""

from __future__ import annotations

import ast
import inspect
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
