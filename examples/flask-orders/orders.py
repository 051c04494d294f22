"""Orders API: a Flask app served by uWSGI over FastCGI behind mtls-deploy's nginx
(``backend: python``, ``python_wsgi: orders:app``).

nginx checks the caller's client certificate and passes what it found as FastCGI params, which
a WSGI app reads in its environ: ``VERIFIED`` (``SUCCESS``), ``DN`` (the subject, RFC 2253:
``CN=bob,O=Example\\, Inc.``), ``ISSUER_DN``, ``SERIAL``, ``FINGERPRINT``, ``NOT_AFTER``. A
request header arrives as ``HTTP_*`` and is never read for identity. The caller's name is the
CN of the DN. Orders live in SQLite under ``var/`` (``app_shared: [var]``: a directory that
outlives releases, the only place the app may write). The receipt of an order is an
HMAC-SHA256 of its id with ``ORDERS_SIGNING_KEY`` from the app's environment.

    GET  /orders       200 {"client": "bob", "orders": [...]}: the caller's orders
    POST /orders       {"item": "tea", "quantity": 2} -> 201 {"order": {...}}; 400 otherwise
    GET  /admin/stats  200 {"orders": 3, "clients": 2, "release": "<release id>"}
    GET  /health       200 {"status": "ok"}
"""

import hashlib
import hmac
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

HERE = Path(__file__).resolve().parent  # the release itself, not the `current` link
DATABASE = HERE / "var" / "orders.sqlite3"

app = Flask(__name__)


def rdn_values(dn: str, attribute: str) -> list[str]:
    """The values of ``attribute`` in an RFC 2253 DN, escapes undone.

    Example: ``rdn_values("CN=bob,O=Example\\\\, Inc.", "O")`` -> ``["Example, Inc."]``
    """
    found, name, value, escaped, in_value = [], "", "", False, False
    for char in dn + ",":
        if escaped:
            value, escaped = value + char, False
        elif char == "\\" and in_value:
            escaped = True
        elif char == "=" and not in_value:
            in_value = True
        elif char in ",+" and in_value:
            if name.strip().upper() == attribute.upper():
                found.append(value)
            name, value, in_value = "", "", False
        elif in_value:
            value += char
        else:
            name += char
    return found


def param(name: str) -> str:
    """A FastCGI param of nginx's as text (WSGI hands bytes over as latin-1, PEP 3333)."""
    return request.environ.get(name, "").encode("latin-1", "replace").decode("utf-8", "replace")


def caller() -> str | None:
    """The client's name (the CN nginx verified), or None."""
    if param("VERIFIED") != "SUCCESS":
        return None
    names = rdn_values(param("DN"), "CN")
    return names[0] if names else None


def database() -> sqlite3.Connection:
    """The orders database, created on first use."""
    connection = sqlite3.connect(DATABASE, timeout=10)
    connection.row_factory = sqlite3.Row
    connection.execute(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, client TEXT NOT NULL,"
        " item TEXT NOT NULL, quantity INTEGER NOT NULL, created REAL NOT NULL)"
    )
    return connection


def receipt(order_id: int) -> str | None:
    """HMAC-SHA256 of the order's id with the app's secret, or None without one."""
    key = os.environ.get("ORDERS_SIGNING_KEY", "")
    if not key:
        return None
    return hmac.new(key.encode(), str(order_id).encode(), hashlib.sha256).hexdigest()


def as_order(row: sqlite3.Row) -> dict:
    """One order as the API shows it."""
    return {**dict(row), "receipt": receipt(row["id"])}


@app.before_request
def require_client():
    """Every route but /health needs a verified client certificate."""
    if request.path != "/health" and caller() is None:
        return jsonify(error="client certificate required"), 401
    return None


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.get("/orders")
def list_orders():
    client = caller()
    with closing(database()) as db:
        rows = db.execute("SELECT * FROM orders WHERE client = ? ORDER BY id", (client,))
        return jsonify(client=client, orders=[as_order(r) for r in rows])


@app.post("/orders")
def add_order():
    body = request.get_json(silent=True)
    item = body.get("item") if isinstance(body, dict) else None
    quantity = body.get("quantity", 1) if isinstance(body, dict) else None
    valid_quantity = isinstance(quantity, int) and not isinstance(quantity, bool) and quantity >= 1
    if not isinstance(item, str) or not 0 < len(item) <= 200 or not valid_quantity:
        return jsonify(error='send a JSON object: {"item": "<name>", "quantity": <1 or more>}'), 400
    with closing(database()) as db, db:
        cursor = db.execute(
            "INSERT INTO orders (client, item, quantity, created) VALUES (?, ?, ?, ?)",
            (caller(), item, quantity, time.time()),
        )
        row = db.execute("SELECT * FROM orders WHERE id = ?", (cursor.lastrowid,)).fetchone()
    return jsonify(order=as_order(row)), 201


@app.get("/admin/stats")
def stats():
    with closing(database()) as db:
        orders, clients = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT client) FROM orders"
        ).fetchone()
    return jsonify(orders=orders, clients=clients, release=HERE.name)


@app.errorhandler(HTTPException)
def json_error(error: HTTPException):
    """404, 405 and the like as JSON, as every other answer."""
    return jsonify(error=error.description), error.code
