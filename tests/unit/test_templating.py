"""Templates: an undefined variable is an error, and a user's template extends ours."""

import jinja2
import pytest

from mtls_deploy.templating import render


def test_an_undefined_variable_is_an_error_not_an_empty_string(tmp_path):
    (tmp_path / "t.j2").write_text("listen {{ https_port }};\n")
    assert render("t.j2", templates_dir=tmp_path, https_port=8443) == b"listen 8443;\n"
    with pytest.raises(jinja2.UndefinedError, match="https_port"):
        render("t.j2", templates_dir=tmp_path)


def test_a_users_template_extends_the_site_without_forking_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "site.j2").write_text("server {\n{% block extra %}{% endblock %}}\n")
    (tmp_path / "mine.conf.j2").write_text(
        '{% extends "site.j2" %}{% block extra %}  add_header X-Team payments;\n{% endblock %}'
    )
    rendered = render("mine.conf.j2", templates_dir=tmp_path / "base")
    assert rendered == b"server {\n  add_header X-Team payments;\n}\n"
    absolute = render(str(tmp_path / "mine.conf.j2"), templates_dir=tmp_path / "base")
    assert absolute == rendered
