"""The live try of ``doctor --cert FILE --key KEY``: curl on a consumer host against each API
host, as the smoke test does (the smoke test's script: the files in a 0700 temporary directory
removed on exit; never ``-k``: the server is verified with the PKI's server CA)."""

import json

from ..connection import Remote, SshTarget
from ..deliver import CONSUMERS, consumer_hosts
from ..smoke.cases import CURL_TIMEOUT, Request, tmp_file
from ..smoke.remote import parse_results, script_for
from ..smoke.run import api_target
from ..smoke.verdicts import short_error
from .causes import cause_for


def consumer_for(loaded, name: str):
    """The consumer that holds ``name``'s bundle, else the first of group consumers, or None."""
    holders = consumer_hosts(loaded, name)
    if holders:
        return holders[0]
    members = loaded.groups.get(CONSUMERS, [])
    return loaded.host(members[0]) if members else None


def requests_for(source: str, api_hosts: list) -> list[Request]:
    """A /whoami with the file's certificate and key, from ``source`` to each API host."""
    cert, key = tmp_file("doctor.crt"), tmp_file("doctor.key")
    return [Request(f"doctor>{h.name}", source, api_target(h), "/whoami", cert, key)
            for h in api_hosts]  # fmt: skip


def try_live(consumer, api_hosts: list, cert_pem: bytes, key_pem: bytes, server_ca: bytes) -> dict:
    """{API host: what the server said} for one request each from ``consumer``."""
    requests = requests_for(consumer.name, api_hosts)
    files = {"doctor.crt": cert_pem, "doctor.key": key_pem, "server-ca.crt": server_ca}
    with Remote(SshTarget.from_vars(consumer.name, consumer.vars)) as remote:
        output = remote.run_script(script_for(requests, files),
                                   timeout=CURL_TIMEOUT * len(requests) + 30)  # fmt: skip
    results, has_curl = parse_results(output.stdout)
    if not has_curl:
        return {h.name: "curl is not installed on " + consumer.name for h in api_hosts}
    return {h.name: answer(results.get(f"doctor>{h.name}")) for h in api_hosts}


def answer(result) -> str:
    """One curl result in words: ``accepted (200)``, ``refused (400): certificate revoked``."""
    if result is None:
        return "no answer"
    if result.status == 0:
        return f"no HTTP answer: {short_error(result.error) or 'exit ' + str(result.exit_code)}"
    if result.status == 200:
        return "accepted (200)"
    reason = _reason(result.body)
    cause = cause_for(reason) if reason else None
    why = f": {reason}" + (f" ({cause.cause})" if cause else "") if reason else ""
    return f"refused ({result.status}){why}"


def _reason(body: str) -> str:
    try:
        return str(json.loads(body).get("reason") or "")
    except (ValueError, AttributeError):
        return ""
