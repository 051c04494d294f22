"""The mTLS API as a WSGI application, standard library only (served by uWSGI over FastCGI).

nginx verifies the client certificate and passes what it found as FastCGI params: VERIFIED,
DN, ISSUER_DN, SERIAL, FINGERPRINT, NOT_AFTER. Identity comes from those params only. A request
header such as ``Verified: SUCCESS`` reaches us as HTTP_VERIFIED and is never read.

Same routes and the same JSON, byte for byte, as templates/php/index.php:

    GET /health  -> 200 {"status":"ok"}
    GET /whoami  -> 200 {"verified":"SUCCESS","subject":{"CN":"bob"},...}, or 401 without a
                    verified client certificate
    anything else -> 404 (unknown path) or 405 (other method)
"""

import json
import re

IDENTITY_PARAMS = ("VERIFIED", "DN", "ISSUER_DN", "SERIAL", "FINGERPRINT", "NOT_AFTER")
HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
JSON_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
]


# --- RFC 2253 distinguished names ------------------------------------------------------------


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not escaped with a backslash; escapes are kept.

    Example: ``split_unescaped("CN=a\\,b,O=c", ",")`` -> ``["CN=a\\,b", "O=c"]``
    """
    parts, current, i = [], [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def unescape_value(raw: str) -> str:
    """Undo RFC 2253 escapes: ``\\,`` -> ``,`` and ``\\C3\\A9`` (UTF-8 bytes) -> ``é``."""
    out, i = bytearray(), 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            pair = raw[i + 1 : i + 3]
            if HEX_PAIR.fullmatch(pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out += raw[i + 1].encode()
            i += 2
            continue
        out += char.encode()
        i += 1
    return out.decode("utf-8", "replace")


def parse_dn(dn: str) -> dict:
    """An RFC 2253 DN (nginx's ``$ssl_client_s_dn``) as ``{type: value}``, in DN order.

    Multi-valued RDNs (``CN=bob+UID=42``) give one key each; a type seen twice (two OUs) gives
    a list. Example: ``parse_dn("CN=bob,O=Example\\, Inc.,C=US")`` ->
    ``{"CN": "bob", "O": "Example, Inc.", "C": "US"}``
    """
    fields: dict = {}
    if not dn:
        return fields
    for rdn in split_unescaped(dn, ","):
        for ava in split_unescaped(rdn, "+"):
            kind, equals, raw = ava.partition("=")
            kind = kind.strip(" \t\n\r\0\x0b")  # what PHP's trim() strips
            if not equals or not kind:
                continue
            value = unescape_value(raw)
            if kind not in fields:
                fields[kind] = value
            elif isinstance(fields[kind], list):
                fields[kind].append(value)
            else:
                fields[kind] = [fields[kind], value]
    return fields


# --- the API ---------------------------------------------------------------------------------


def client_identity(params: dict) -> dict | None:
    """The verified client from nginx's FastCGI params, or None (no certificate, or not verified)."""
    if params.get("VERIFIED") != "SUCCESS":
        return None
    return {
        "verified": "SUCCESS",
        "subject": parse_dn(params.get("DN", "")),
        "issuer": parse_dn(params.get("ISSUER_DN", "")),
        "serial": params.get("SERIAL", ""),
        "fingerprint": params.get("FINGERPRINT", ""),
        "not_after": params.get("NOT_AFTER", ""),
    }


def route(method: str, path: str, params: dict) -> tuple[int, dict, list]:
    """(status, JSON body, extra headers) for one request. Pure: no I/O.

    Example: ``route("GET", "/health", {})`` -> ``(200, {"status": "ok"}, [])``
    """
    if path not in ("/health", "/whoami"):
        return 404, {"error": "not found"}, []
    if method not in ("GET", "HEAD"):
        return 405, {"error": "method not allowed"}, [("Allow", "GET, HEAD")]
    if path == "/health":
        return 200, {"status": "ok"}, []
    identity = client_identity(params)
    if identity is None:
        return 401, {"error": "client certificate required"}, []
    return 200, identity, []


def to_json(body: dict) -> bytes:
    """Compact JSON plus a newline, as PHP's json_encode(..., JSON_UNESCAPED_SLASHES) writes it."""
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def wsgi_text(value: str) -> str:
    """A WSGI environ string (bytes read as latin-1, PEP 3333) as the UTF-8 text it carries."""
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


def request_path(environ: dict) -> str:
    """The decoded, normalised path: nginx's DOCUMENT_URI ($uri), else PATH_INFO."""
    return wsgi_text(environ.get("DOCUMENT_URI") or environ.get("PATH_INFO") or "/")


def identity_params(environ: dict) -> dict:
    """Only the FastCGI params nginx sets for the client certificate; never HTTP_* headers."""
    return {name: wsgi_text(environ[name]) for name in IDENTITY_PARAMS if name in environ}


def application(environ, start_response):
    """The WSGI entry point uWSGI calls."""
    method = environ.get("REQUEST_METHOD", "GET")
    status, body, headers = route(method, request_path(environ), identity_params(environ))
    payload = to_json(body)
    start_response(
        f"{status} {REASONS[status]}",
        [*JSON_HEADERS, *headers, ("Content-Length", str(len(payload)))],
    )
    return [b""] if method == "HEAD" else [payload]
