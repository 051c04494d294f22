"""Templates: an undefined variable is an error, a user's template extends ours, and a user's
template cannot reach Python's internals (the sandbox)."""

import pytest

from mtls_deploy.errors import BadInput
from mtls_deploy.templating import render


def test_an_undefined_variable_is_an_error_not_an_empty_string(tmp_path):
    (tmp_path / "t.j2").write_text("listen {{ https_port }};\n")
    assert render("t.j2", templates_dir=tmp_path, https_port=8443) == b"listen 8443;\n"
    with pytest.raises(BadInput, match=r"^template t.j2: 'https_port' is undefined"):
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


ESCAPES = [
    "{{ lipsum.__globals__.os.environ.MTLS_DEPLOY_CA_PASSPHRASE }}",
    "{{ lipsum.__globals__['os'].environ['MTLS_DEPLOY_CA_PASSPHRASE'] }}",
    "{{ cycler.__init__.__globals__.os.environ.MTLS_DEPLOY_CA_PASSPHRASE }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_users_template_cannot_reach_the_environment(tmp_path, monkeypatch, escape):
    """The issue's proof: a site template named in the inventory printed the CA passphrase."""
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "the-ca-passphrase")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.conf.j2").write_text(f"# {escape}\n")
    with pytest.raises(BadInput) as refused:
        render(str(tmp_path / "evil.conf.j2"))
    message = str(refused.value)
    assert message.startswith(f"template {tmp_path / 'evil.conf.j2'}: ")
    assert "unsafe" in message and "\n" not in message
    assert "the-ca-passphrase" not in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{% if %}", r"line 1: Expected an expression"),
        ('{% extends "nowhere.j2" %}', r"nowhere.j2 not found"),
    ],
)
def test_a_broken_template_is_one_line_naming_it(tmp_path, text, problem):
    (tmp_path / "t.j2").write_text(text)
    with pytest.raises(BadInput, match=rf"^template t.j2: {problem}"):
        render("t.j2", templates_dir=tmp_path)
