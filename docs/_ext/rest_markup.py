"""A Griffe extension: the reST markup of message_io's docstrings, as Markdown.

The docstrings follow the Google style (``Args:``, ``Returns:``, ``Raises:``), which
mkdocstrings reads, but cross-references and literal blocks are written as in Sphinx:
``:class:`Endpoint```, ``:meth:`~NodeListener.for_each```, and a paragraph ending in
``::`` before an indented block. Markdown shows those as they are written, so this
extension rewrites them when the package is loaded, before anything is rendered:

* a role becomes a link to the object it names, resolved from the docstring's own scope
  outwards (method, class, module, package), as Sphinx resolves it; the link is an
  *optional* cross-reference, so a name that has no page (a private module, the standard
  library) is shown as code instead of failing the build;
* ``text::`` becomes ``text:`` and the indented block after it a fenced code block,
  highlighted as Python when it parses as Python.

The source stays plain reST-flavoured text, readable with ``help()``.
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Any

import griffe

# :role:`target`, :role:`~a.b.target` (shown as "target"), :role:`title <target>`
_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):"
    r"`(?:(?P<title>[^`<]+?)\s*<(?P<explicit>[\w.]+)>|(?P<short>~?)(?P<target>[\w.]+)(?P<call>\(\))?)`"
)


def _lookup(loader: griffe.GriffeLoader, path: str) -> griffe.Object | griffe.Alias | None:
    try:
        found: griffe.Object | griffe.Alias = loader.modules_collection[path]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return found


def _resolve(loader: griffe.GriffeLoader, obj: griffe.Object, target: str) -> str | None:
    """The canonical path of ``target`` as seen from ``obj``, or None if unknown."""
    scopes: list[str] = []
    scope: griffe.Object | griffe.Alias | None = obj
    while scope is not None:
        scopes.append(scope.path)
        scope = scope.parent
    for candidate in [*(f"{s}.{target}" for s in scopes), target]:
        found = _lookup(loader, candidate)
        if found is not None:
            try:
                return found.canonical_path
            except griffe.AliasResolutionError:
                return candidate
    return None


def _roles(loader: griffe.GriffeLoader, obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["explicit"]:
            target, shown = match["explicit"], match["title"]
        else:
            target, call = match["target"], match["call"] or ""
            shown = (target.rsplit(".", 1)[-1] if match["short"] else target) + call
        path = _resolve(loader, obj, target)
        if path is None:
            return f"`{shown}`"
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'

    return _ROLE.sub(replace, text)


def _literal_blocks(text: str) -> str:
    """``para::`` + blank line + indented block -> ``para:`` + a fenced block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.rstrip()
        if not stripped.endswith("::"):
            out.append(line)
            i += 1
            continue
        head = stripped[:-2].rstrip()
        indent = len(line) - len(line.lstrip())
        if head.strip():
            out.append(head + ":")
        i += 1
        block: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        code = textwrap.dedent("\n".join(block)).strip("\n")
        try:
            ast.parse(code)
            language = "python"
        except SyntaxError:
            language = "text"
        pad = " " * indent
        out += ["", f"{pad}```{language}"]
        out += [pad + row if row else "" for row in code.split("\n")]
        out += [f"{pad}```", ""]
    return "\n".join(out)


class RestMarkup(griffe.Extension):
    """Rewrites every docstring of the loaded package once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                value = _literal_blocks(obj.docstring.value)
                obj.docstring.value = _roles(loader, obj, value)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)  # type: ignore[arg-type]

        visit(pkg)

    # Griffe 1 calls this hook on_package_loaded (mkdocstrings-python 2.0 accepts Griffe
    # 1.13 or later); both rewrites are idempotent, so being called twice does no harm.
    on_package_loaded = on_package
