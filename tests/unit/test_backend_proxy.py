"""backend_proxy: the unit written from proxy_command (quoting for systemd, placeholders,
relaxations), the role's resources and exports, the nginx locations it brings, and the steps
of a release switch."""

import re
import shlex
import subprocess

import pytest

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.release.instances import INSTANCES
from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps
from mtls_deploy.resources import Directory, File, Packages, User
from mtls_deploy.role_loader import load
from mtls_deploy.shell import render as shell_text
from mtls_deploy.templating import render

proxy = load("backend_proxy").module
nginx = load("nginx").module
FACTS = HostFacts(os_id="debian", os_version="12", packages={"nginx": "1.22.1-9+deb12u1"})
RELEASE_ID = "20261130T081500Z-1a2b3c4d5e6f"
SHA = "0123456789ab" + "c" * 52


def engine_vars(role: str = "backend_proxy", **overrides) -> dict:
    """The host's variables as the engine hands them to ``role`` (defaults, exports)."""
    from mtls_deploy import role_loader
    from mtls_deploy.inventory import role_defaults

    v = {
        "inventory_hostname": "api1",
        "server_name": "api1.lab.test",
        "https_listen": "127.0.0.1",
        "https_port": 8441,
        "tls_dir": "/etc/nginx/mtls",
        "backend": "proxy",
        "app_src": "examples/fastapi-orders",
        "app_shared": ["var"],
    }
    merged = {k: x for layer in role_defaults() for k, x in layer.values.items()} | v | overrides
    roles = role_loader.host_roles({**merged, "roles": [role]})
    return role_loader.with_exports(roles, merged, HostFacts())[role]


def unit_text(**overrides) -> str:
    return proxy.render_unit(engine_vars(**overrides)).decode()


def staged_text(**overrides) -> str:
    return proxy.render_staged(engine_vars(**overrides)).decode()


def exec_start(text: str) -> str:
    return re.search(r"^ExecStart=(.*)$", text, re.M).group(1)


# --- ExecStart from proxy_command -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "word"),
    [
        ("app:app", '"app:app"'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("it's", '"it\'s"'),
        ("$HOME ${PATH}", '"$$HOME $${PATH}"'),  # systemd would expand them
        ("50% %i %n", '"50%% %%i %%n"'),  # systemd specifiers
        ("back\\slash \\n", '"back\\\\slash \\\\n"'),  # C escapes inside quotes
        (";", '";"'),  # a lone ; would separate commands
        ("", '""'),
    ],
)
def test_each_argument_is_one_quoted_word_systemd_reads_back_as_written(argument, word):
    assert proxy.exec_word(argument, {}) == word


def test_placeholders_become_the_instance_paths():
    """{socket} by the instance's name (%i); {release} by a mark the start of each instance
    replaces with its release's path (a control character: no inventory value holds one)."""
    text = staged_text(
        proxy_command=["{venv}/bin/gunicorn", "--bind", "unix:{socket}", "{release}"]
    )
    assert exec_start(text) == (
        '"\x01/.venv/bin/gunicorn" "--bind" "unix:/run/api-proxy/%i/app.sock" "\x01"'
    )


def test_a_placeholder_beside_text_that_needs_escaping():
    word = proxy.exec_word("--x=50%{socket}$", {"socket": "/run/a/%i/app.sock"})
    assert word == '"--x=50%%/run/a/%i/app.sock$$"'


def test_the_default_command_is_uvicorn_on_the_socket():
    assert exec_start(staged_text()) == (
        '"\x01/.venv/bin/uvicorn" "--uds" "/run/api-proxy/%i/app.sock" "--no-access-log" "app:app"'
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([], "proxy_command is empty: give your server's command as a list"),
        (["uvicorn", "app:app"], "'uvicorn' must be an absolute path or start with {venv}"),
        (["./server"], "must be an absolute path"),
        (["/bin/server", "--uds", "{sock}"], "unknown placeholder {sock} in '{sock}'"),
    ],
)
def test_a_command_the_role_cannot_run_is_one_line(command, message):
    with pytest.raises(BadInput, match=re.escape(message)) as refused:
        staged_text(proxy_command=command)
    assert "\n" not in str(refused.value)


def test_braces_that_are_no_placeholder_pass_as_text():
    word = proxy.exec_word(
        '--log-config={"version": 1}', proxy.instance_paths({"app_root": "/a", "proxy_unit": "u"})
    )
    assert word == '"--log-config={\\"version\\": 1}"'


# --- the unit -------------------------------------------------------------------------------


def test_environment_lines_are_quoted_and_secrets_come_from_the_env_file():
    text = staged_text(proxy_environment={"WORKERS": 2, "GREETING": 'a "b" 100% $x\\'})
    assert 'Environment="GREETING=a \\"b\\" 100%% $x\\\\"' in text.splitlines()
    assert 'Environment="WORKERS=2"' in text.splitlines()
    assert "EnvironmentFile=-/etc/mtls-deploy/api/app.env" in text.splitlines()


def test_staged_settings_run_the_release_it_is_copied_for():
    lines = staged_text().splitlines()
    assert "ConditionPathExists=\x01" in lines and "WorkingDirectory=\x01" in lines
    assert not [line for line in lines if line.startswith(("User", "Private", "Protect"))]


def test_unit_runs_as_the_user_on_a_socket_only_nginx_may_reach():
    lines = unit_text().splitlines()
    for line in [
        "User=api-proxy",
        "ExecStartPre=+/usr/bin/install -d -o api-proxy -g www-data -m 0750 /run/api-proxy/%i",
        "ExecStopPost=+/usr/bin/find /run/api-proxy/%i -mindepth 1 -delete",
        "UMask=0007",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30s",
        "ReadWritePaths=-/srv/api/shared -/run/api-proxy/%i",
        "[Install]",
        "WantedBy=multi-user.target",
    ]:
        assert line in lines
    assert not [line for line in lines if line.startswith(("ExecStart=", "WorkingDirectory"))]


SANDBOX = ("PrivateNetwork=yes", "IPAddressDeny=any", "RestrictAddressFamilies=AF_UNIX")


def test_default_sandbox_has_no_network_and_no_writable_executable_memory():
    lines = unit_text().splitlines()
    assert "MemoryDenyWriteExecute=yes" in lines
    assert all(line in lines for line in SANDBOX)
    assert "# Sandboxed" in unit_text() and "(none here)" in unit_text()


def test_jit_allows_writable_executable_memory_only():
    lines = unit_text(proxy_hardening=["jit"]).splitlines()
    assert "MemoryDenyWriteExecute=no" in lines and "MemoryDenyWriteExecute=yes" not in lines
    assert all(line in lines for line in SANDBOX)


def test_network_allows_ip_sockets_only():
    lines = unit_text(proxy_hardening=["network"]).splitlines()
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in lines
    assert not any(line in lines for line in SANDBOX)
    assert "MemoryDenyWriteExecute=yes" in lines


def test_unit_names_follow_proxy_unit_and_user():
    text = unit_text(proxy_unit="orders", proxy_user="orders", proxy_socket_group="nginx")
    assert "ExecStartPre=+/usr/bin/install -d -o orders -g nginx -m 0750 /run/orders/%i" in text
    assert "User=orders" in text and "/run/api-proxy" not in text
    assert "/run/orders/%i/app.sock" in staged_text(proxy_unit="orders")


# --- resources, handlers, exports -----------------------------------------------------------


def test_resources():
    v = engine_vars()
    resources = proxy.resources(v, FACTS)
    assert resources[0] == Packages(("curl", "python3-venv"))
    assert User("api-proxy") in resources
    dirs = {r.path: r for r in resources if isinstance(r, Directory)}
    assert (dirs["/srv/api/venvs"].owner, dirs["/srv/api/venvs"].mode) == ("api-proxy", 0o755)
    shared = dirs["/srv/api/shared/var"]
    assert (shared.owner, shared.group, shared.mode) == ("api-proxy", "api-proxy", 0o750)
    unit, staged = [r for r in resources if isinstance(r, File)]
    assert unit.path == "/etc/systemd/system/api-proxy@.service"
    assert unit.notify == ("daemon-reload", "restart proxy instances")
    assert unit.content == proxy.render_unit(v)
    assert staged.path == "/etc/mtls-deploy/api/api-proxy.conf"
    assert (staged.mode, staged.owner, staged.notify) == (
        0o644,
        "root",
        ("restart proxy instances",),
    )
    assert staged.content == proxy.render_staged(v)


def test_without_app_src_the_role_says_what_to_set():
    with pytest.raises(BadInput, match="backend proxy runs your own server: set app_src"):
        proxy.resources(engine_vars(app_src=""), FACTS)


def test_handler_restarts_the_current_release_blue_green_after_any_change():
    (handler,) = proxy.handlers(engine_vars(), FACTS)
    (argv,) = handler.command
    assert (handler.name, handler.order, handler.listen) == (
        "restart proxy instances",
        40,
        ("app environment changed",),
    )
    assert argv[:2] == ("sh", "-c") and argv[2] == INSTANCES
    assert argv[3:] == (
        "instances",
        "restart",
        ".proxy.sock",
        "api-proxy",
        "/etc/mtls-deploy/api/api-proxy.conf",
        "/srv/api",
        "/health",
        "30",
    )


def test_exports_name_the_locations_and_the_socket_link_in_current():
    assert proxy.exports(engine_vars(), FACTS) == {
        "nginx_locations": "nginx/locations/proxy.conf.j2",
        "proxy_socket": "/srv/api/current/.proxy.sock",
    }


# --- nginx's locations ----------------------------------------------------------------------

IDENTITY = {
    "X-Client-Verify": "$ssl_client_verify",
    "X-Client-DN": "$ssl_client_s_dn",
    "X-Client-Issuer-DN": "$ssl_client_i_dn",
    "X-Client-Serial": "$ssl_client_serial",
    "X-Client-Fingerprint": "$ssl_client_fingerprint",
    "X-Client-Not-After": "$ssl_client_v_end",
}


def site() -> str:
    return nginx.render_site(engine_vars("nginx"), FACTS).decode()


def directives() -> list[str]:
    """The site's lines without comments, stripped."""
    return [
        line.split("#")[0].strip() for line in site().splitlines() if line.split("#")[0].strip()
    ]


def test_site_proxies_to_the_socket_link_without_a_reload_or_keepalive_upstream():
    lines = directives()
    assert "proxy_pass http://unix:/srv/api/current/.proxy.sock:;" in lines
    assert not [line for line in lines if line.startswith(("fastcgi_", "upstream", "keepalive"))]


@pytest.mark.parametrize(("header", "variable"), IDENTITY.items())
def test_identity_headers_are_set_by_nginx(header, variable):
    assert f"proxy_set_header {header} {variable};" in directives()


def test_underscore_headers_stay_dropped():
    """A client's X_Client_DN must not reach the app as X-Client-DN (WSGI reads both as
    HTTP_X_CLIENT_DN): nginx drops names with '_' unless told otherwise."""
    assert not [line for line in directives() if "underscores_in_headers" in line]
    assert not [line for line in directives() if "ignore_invalid_headers" in line]


def test_forwarding_headers_are_nginx_own():
    lines = directives()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in lines  # set, not appended
    assert 'proxy_set_header Forwarded "";' in lines
    assert 'proxy_set_header X-Forwarded-Host "";' in lines


def test_locations_template_alone():
    text = render(
        "nginx/locations/proxy.conf.j2", proxy_socket="/s/x.sock", fastcgi_extra=""
    ).decode()
    assert text.count("location / {") == 1 and "proxy_pass http://unix:/s/x.sock:;" in text


# --- a release switch -----------------------------------------------------------------------


def context(**overrides) -> ReleaseContext:
    fields = {
        "api_name": "api",
        "root": "/srv/api",
        "release": f"/srv/api/releases/{RELEASE_ID}",
        "build_dir": f"/srv/api/releases/{RELEASE_ID}.partial",
        "release_id": RELEASE_ID,
        "current": "/srv/api/current",
        "previous": "/srv/api/releases/20261129T120000Z-ffffffffffff",
        "shared_root": "/srv/api/shared",
        "shared": ("var",),
        "env_file": "/etc/mtls-deploy/api/app.env",
        "files": frozenset({"app.py", "requirements.txt"}),
        "digests": {"requirements.txt": SHA},
    }
    return ReleaseContext(**{**fields, **overrides})


def steps(**overrides) -> ReleaseSteps:
    return proxy.release(engine_vars(), FACTS, context(**overrides))


def test_build_makes_the_virtualenv_of_the_requirements_once():
    ((argv,),) = steps().build
    assert argv[:2] == ("sh", "-c")
    assert argv[3:] == ("build-venv", "/srv/api/venvs/0123456789ab", "../../venvs/0123456789ab")
    assert "--require-hashes" in argv[2] and ".complete" in argv[2]
    assert "'^[^#]*--hash='" in argv[2]  # a comment that mentions --hash= requires nothing
    assert steps().user == "api-proxy"


def test_no_requirements_no_build():
    assert steps(files=frozenset({"server"}), digests={}).build == ()


def test_start_activate_retire_call_the_instances_script():
    ((start,),), ((activate,),), ((retire,), (venvs,)) = (
        steps().start,
        steps().activate,
        steps().retire,
    )
    release = f"/srv/api/releases/{RELEASE_ID}"
    staged = "/etc/mtls-deploy/api/api-proxy.conf"
    link = ".proxy.sock"
    assert start[3:] == ("instances", "start", link, "api-proxy", staged, release, "/health", "30")
    assert activate[3:] == ("instances", "activate", link, "api-proxy", release)
    assert retire[3:] == (
        "instances",
        "retire",
        link,
        "api-proxy",
        "/srv/api/releases/20261129T120000Z-ffffffffffff",
    )
    assert {start[2], activate[2], retire[2]} == {INSTANCES}
    assert venvs[3:] == ("retire-venvs", "/srv/api") and "rm -rf" in venvs[2]


def test_first_release_retires_no_instance():
    ((argv,),) = steps(previous=None).retire
    assert argv[3] == "retire-venvs"


def test_readiness_follows_the_variables():
    ((start,),) = proxy.release(
        engine_vars(proxy_ready_path="/ready", proxy_start_timeout=5), FACTS, context()
    ).start
    assert start[-2:] == ("/ready", "5")


def test_the_instances_script_passes_sh_n(tmp_path):
    script = tmp_path / "instances.sh"
    script.write_text(INSTANCES)
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0


def test_every_step_is_valid_shell_the_engine_can_quote():
    for command in [*steps().build, *steps().start, *steps().activate, *steps().retire]:
        text = shell_text(command)
        assert shlex.split(text)  # quoted as one command line


# --- the schema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("proxy_command", "uvicorn app:app", "must be a list, not 'uvicorn app:app'"),
        ("proxy_command", ["/bin/x", "a\nb"], "'a\\nb' is not one line of at most 1024"),
        ("proxy_hardening", ["nojit"], "must be one of jit, network, not 'nojit'"),
        ("proxy_environment", {"1X": "a"}, "has a bad key: '1X' is not an environment variable"),
        ("proxy_environment", {"A": "a\nb"}, ".A must be one line of text or an integer"),
        ("proxy_ready_path", "health", "'health' is not an absolute URL path such as /health"),
    ],
)
def test_the_schema_refuses_in_words(name, value, message):
    from mtls_deploy import schema

    with pytest.raises(ValueError, match=re.escape(message)):
        schema.check_value(value, schema.role_schema("backend_proxy")[name])
