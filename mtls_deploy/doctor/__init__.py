"""``inv doctor``: explains why a client is refused, in one sentence and one command.

``--name bob``: reads the access log (and the verify errors in the error log, logged at info
level) on each API host over SSH, finds bob's recent requests by serial or CN, and maps nginx's
``verify=`` result (OpenSSL's verify codes 2/20, 3, 9, 10, 11, 12, 18/19, 21, 23, 26 and "no
required SSL certificate was sent": ``causes.py``) to the cause and the fix.

``--cert FILE [--key KEY]``: checks the file (which CA signed it, dates, extendedKeyUsage,
revoked per the PKI's CRL, the key its own) and, with the key, tries it from a consumer host
against each API host with curl, as the smoke test does.

Modules: ``causes`` (the table, pure), ``logs`` (reading and parsing nginx's logs),
``certfile`` (the file's checks), ``live`` (the curl from the consumer), ``run``.
"""

from ..errors import BadInput


def doctor_main(name: str | None, cert: str | None, key: str | None, hosts: list[str]) -> int:
    """Run ``inv doctor``; returns 0 (nothing wrong found) or 1 (a refusal explained).

    Example: ``doctor_main("bob", None, None, ["api1"])``
    """
    from .. import inventory
    from ..pki.store import PkiStore

    if bool(name) == bool(cert):
        raise BadInput(
            "give --name CLIENT or --cert FILE (one of them): e.g. inv doctor --name bob"
        )
    if key and not cert:
        raise BadInput("--key goes with --cert FILE")
    if cert:  # an unreadable file is bad input, whatever else is wrong
        from .certfile import read_certificate, read_key

        read_certificate(cert)
        if key:
            read_key(key)
    loaded, store = inventory.load(), PkiStore.open()
    api_hosts = loaded.select(hosts, None if hosts else "api")
    say = _printer()
    if name:
        from .run import diagnose_name

        return diagnose_name(name, api_hosts, store, say)
    return _file(cert, key, loaded, api_hosts, store, say)


def _file(cert: str, key: str | None, loaded, api_hosts, store, say) -> int:
    from pathlib import Path

    from .live import consumer_for, try_live
    from .run import diagnose_file

    code, name = diagnose_file(
        cert, key, store, say, host=api_hosts[0].name if api_hosts else "api1"
    )
    consumer = consumer_for(loaded, name)
    if not key or consumer is None or not api_hosts:
        say(
            "live: skipped ("
            + ("give --key KEY to try it" if not key else "no consumer or API host")
            + ")"
        )
        return code
    pems = Path(cert).expanduser().read_bytes(), Path(key).expanduser().read_bytes()
    for host, said in try_live(consumer, api_hosts, *pems, store.server_ca_pem()).items():
        say(f"live: from {consumer.name} to {host}: {said}")
    return code


def _printer():
    def say(line: str) -> None:
        print(line, flush=True)

    return say


__all__ = ["doctor_main"]
