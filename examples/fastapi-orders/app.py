"""Orders API: a FastAPI app under uvicorn, behind mtls-deploy's nginx (``backend: proxy``).

nginx checks the caller's client certificate and tells the app who it is in request headers
that only nginx sets (a client's own copies never get through): ``X-Client-Verify``
(``SUCCESS``), ``X-Client-DN`` (the subject, RFC 2253: ``CN=alice,O=Example\\, Inc.``),
``X-Client-Serial``, ``X-Client-Fingerprint``, ``X-Client-Not-After``. The caller's name is the
CN of the DN. Orders live in SQLite under ``var/`` (``app_shared: [var]``: a directory that
outlives releases, the only place the app may write).

Run by mtls-deploy as ``uvicorn --uds {socket} app:app`` (the role's default proxy_command).
"""

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

DATABASE = Path(os.environ.get("ORDERS_DATABASE", "var/orders.sqlite3"))
IDENTITY_PREFIXES = ("x-client-", "x_client_")  # every header that claims an identity

app = FastAPI(title="Orders", docs_url=None, redoc_url=None, openapi_url=None)


class NewOrder(BaseModel):
    """What a caller may order."""

    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=1000)


def rdn_values(dn: str, attribute: str) -> list[str]:
    """The values of ``attribute`` in an RFC 2253 DN, escapes undone.

    Example: ``rdn_values("CN=alice,O=Example\\\\, Inc.", "O")`` -> ``["Example, Inc."]``
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


def caller(request: Request) -> str:
    """The client's name (CN) as nginx verified it; 401 without a verified certificate."""
    if request.headers.get("x-client-verify") != "SUCCESS":
        raise HTTPException(401, "a verified client certificate is required")
    names = rdn_values(request.headers.get("x-client-dn", ""), "CN")
    if not names:
        raise HTTPException(401, "the client certificate has no CN")
    return names[0]


def database() -> sqlite3.Connection:
    """The orders database, created on first use."""
    connection = sqlite3.connect(DATABASE, timeout=10)
    connection.execute(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, client TEXT NOT NULL,"
        " item TEXT NOT NULL, quantity INTEGER NOT NULL, created REAL NOT NULL)"
    )
    return connection


@app.get("/health")
def health() -> dict:
    """For the deploy's readiness check (and monitoring): no identity needed. The release is
    the directory the server runs in (``/srv/<api_name>/releases/<release id>``)."""
    return {"status": "ok", "release": Path.cwd().name}


@app.get("/whoami")
def whoami(request: Request) -> dict:
    """Who the caller is (null without a verified certificate), and every header that claims
    an identity as the app receives it."""
    claims = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in request.headers.raw
        if name.decode("latin-1").lower().startswith(IDENTITY_PREFIXES)
    }
    try:
        client = caller(request)
    except HTTPException:
        client = None
    return {"client": client, "identity_headers": claims}


@app.get("/orders")
def list_orders(request: Request) -> dict:
    """The caller's own orders, newest first."""
    client = caller(request)
    with closing(database()) as db:
        rows = db.execute(
            "SELECT id, item, quantity FROM orders WHERE client = ? ORDER BY id DESC", (client,)
        ).fetchall()
    orders = [{"id": i, "item": item, "quantity": quantity} for i, item, quantity in rows]
    return {"client": client, "orders": orders}


@app.post("/orders", status_code=201)
def create_order(order: NewOrder, request: Request) -> dict:
    """A new order in the caller's name."""
    client = caller(request)
    with closing(database()) as db, db:
        cursor = db.execute(
            "INSERT INTO orders (client, item, quantity, created) VALUES (?, ?, ?, ?)",
            (client, order.item, order.quantity, time.time()),
        )
    return {
        "id": cursor.lastrowid,
        "client": client,
        "item": order.item,
        "quantity": order.quantity,
    }


@app.get("/admin/stats")
def stats(request: Request) -> dict:
    """Orders per client. Who may call it is nginx's business (mtls_routes: /admin)."""
    caller(request)
    with closing(database()) as db:
        rows = db.execute(
            "SELECT client, COUNT(*), SUM(quantity) FROM orders GROUP BY client ORDER BY client"
        ).fetchall()
    clients = {client: {"orders": n, "quantity": q} for client, n, q in rows}
    return {"orders": sum(c["orders"] for c in clients.values()), "clients": clients}
