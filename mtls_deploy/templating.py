"""Render the files in ``templates/`` with Jinja2; an undefined variable is an error, not ''."""

from functools import lru_cache
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=4)
def environment(templates_dir: str = str(TEMPLATES_DIR)):
    """One Jinja2 environment per templates directory (tests pass a fixture directory)."""
    import jinja2  # imported here: only runs that render pay for it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, templates_dir: Path | None = None, **context) -> bytes:
    """Render ``templates/<name>`` to bytes.

    Example: ``render("nginx/site.conf.j2", server_name="api1.lab.test", ...)``
    """
    template = environment(str(templates_dir or TEMPLATES_DIR)).get_template(name)
    return template.render(**context).encode()
