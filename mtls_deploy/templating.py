"""Render the files in ``templates/`` with Jinja2; an undefined variable is an error, not ''."""

from functools import lru_cache
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=8)
def environment(*search_path: str):
    """One Jinja2 environment per search path; the first directory that has a name wins."""
    import jinja2  # imported here: only runs that render pay for it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(search_path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, templates_dir: Path | None = None, **context) -> bytes:
    """Render ``templates/<name>`` to bytes.

    ``name`` may also be a path to a template of your own (absolute, or relative to where you
    run ``inv``) that extends ours without forking it::

        {% extends "nginx/site.conf.j2" %}
        {% block server_extra %}add_header X-Team payments;{% endblock %}

    Example: ``render("nginx/site.conf.j2", server_name="api1.lab.test", ...)``
    """
    search = [str(templates_dir or TEMPLATES_DIR)]
    own = Path(name)
    if own.is_file() and (own.is_absolute() or own.parts[0] != "templates"):
        search.insert(0, str(own.resolve().parent))
        name = own.name
    template = environment(*search).get_template(name)
    return template.render(**context).encode()
