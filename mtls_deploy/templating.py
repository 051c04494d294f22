"""Render the files in ``templates/`` with Jinja2, sandboxed; an undefined variable is an error.

A site template may be the user's own (a role variable names it), so templates render in Jinja2's
``SandboxedEnvironment``: ``{{ lipsum.__globals__.os.environ }}`` cannot reach Python's
internals (nor the CA passphrase in the environment). Any template problem is one line
naming the template, as ``BadInput``.
"""

import contextlib
import hashlib
import os
from functools import lru_cache
from pathlib import Path

from . import render_memo
from .errors import BadInput
from .project import package_data

TEMPLATES_DIR = package_data("templates")  # the checkout's templates/, or the installed copy
OPTIONS = {"keep_trailing_newline": True, "trim_blocks": True, "lstrip_blocks": True,
           "autoescape": False}  # fmt: skip


@lru_cache(maxsize=8)
def environment(*search_path: str):
    """One sandboxed Jinja2 environment per search path; the first directory that has a
    name wins."""
    import jinja2  # imported here: only runs that render pay for it
    from jinja2.sandbox import SandboxedEnvironment

    class Recorded(SandboxedEnvironment):
        """Tells ``render_memo`` each template a render loads or looks for."""

        def _load_template(self, name, globals):
            render_memo.loaded(name)
            return super()._load_template(name, globals)

    return Recorded(
        loader=jinja2.FileSystemLoader(list(search_path)),
        undefined=jinja2.StrictUndefined,
        bytecode_cache=bytecode_cache(jinja2.__version__),
        **OPTIONS,
    )


@lru_cache(maxsize=1)
def bytecode_cache(version: str):
    """Compiled templates kept between runs (compiling the site again cost a no-op run ~15 ms),
    in a private folder of the user's cache named after the Jinja2 version and our options
    (Jinja2 keys its cache by template source only); None when that folder is not private."""
    from jinja2 import FileSystemBytecodeCache

    class QuietCache(FileSystemBytecodeCache):
        def dump_bytecode(self, bucket) -> None:
            with contextlib.suppress(OSError):  # a cache that cannot be written costs time only
                super().dump_bytecode(bucket)

    tag = hashlib.sha256(repr((version, "sandboxed", sorted(OPTIONS.items()))).encode())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "mtls-deploy" / f"jinja2-{tag.hexdigest()[:12]}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        mine = folder.stat()
    except OSError:
        return None
    private = mine.st_uid == os.getuid() and not mine.st_mode & 0o077
    return QuietCache(str(folder)) if private else None


def render(name: str, templates_dir: Path | None = None, **context) -> bytes:
    """Render ``templates/<name>`` to bytes.

    ``name`` may also be a path to a template of your own (absolute, or relative to where you
    run ``inv``) that extends ours without forking it::

        {% extends "web/site.conf.j2" %}
        {% block server_extra %}add_header X-Team payments;{% endblock %}

    Example: ``render("web/site.conf.j2", server_name="api1.lab.test", ...)``
    """
    search = [str(templates_dir or TEMPLATES_DIR)]
    own = Path(name)
    if own.is_file() and (own.is_absolute() or own.parts[0] != "templates"):
        search.insert(0, str(own.resolve().parent))
    chosen = own.name if len(search) > 1 else name
    memo_key = render_memo.key(chosen, search, context, OPTIONS)
    remembered = render_memo.recall(memo_key, search) if memo_key else None
    if remembered is not None:
        return remembered
    with render_memo.recording() as names:
        output = _render(name, chosen, search, context)
    if memo_key:
        render_memo.remember(memo_key, search, names, output)
    return output


def _render(name: str, chosen: str, search: list[str], context: dict) -> bytes:
    import jinja2

    try:
        template = environment(*search).get_template(chosen)
        return template.render(**context).encode()
    except jinja2.TemplateError as error:
        raise BadInput(f"template {name}: {_problem(error)}") from None


def _problem(error) -> str:
    """The error in one line, with the fix for the kinds a user's template runs into."""
    import jinja2
    from jinja2.exceptions import SecurityError

    if isinstance(error, SecurityError):
        return f"{str(error).rstrip('.')}: a template may use its variables and filters, not Python's internals"
    if isinstance(error, jinja2.TemplateNotFound):
        return f"{error.name} not found (give a name under templates/ or a file path)"
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"line {error.lineno}: {error.message}"
    if isinstance(error, jinja2.UndefinedError):
        return f"{error.message}: the template uses a variable the role does not give it"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
