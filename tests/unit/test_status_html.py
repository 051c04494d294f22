"""inv status --html: the page's content (pure), and one render in a real browser (headless
Chromium from Debian, scripts/setup.sh installs it) whose text the test reads."""

import datetime as dt
import os
import shutil
import subprocess

import pytest

from mtls_deploy.status import html
from mtls_deploy.status.run import StatusReport, Thresholds
from mtls_deploy.status.verdicts import Check

NOW = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def report(lifetimes_in_minutes=False):
    unit = dt.timedelta(minutes=1) if lifetimes_in_minutes else DAY
    checks = [
        Check("host", "ssh", "ok", "reachable", "api1"),
        Check(
            "server-cert",
            "CN=api1.lab.test",
            "ok",
            "expires in 300 d",
            "api1",
            NOW - 65 * unit,
            NOW + 300 * unit,
            NOW + 178 * unit,
        ),
        Check(
            "crl",
            "crl.pem",
            "warning",
            "expires in 9 d",
            "api1",
            NOW - 171 * unit,
            NOW + 9 * unit,
            NOW - 51 * unit,
        ),
        Check(
            "client",
            "bob",
            "critical",
            "expired 2 d ago",
            None,
            NOW - 363 * unit,
            NOW - 2 * unit,
            NOW - 32 * unit,
        ),
        Check(
            "ca",
            "Example API client CA",
            "ok",
            "expires in 3600 d",
            None,
            NOW - 50 * unit,
            NOW + 3600 * unit,
        ),
    ]
    return StatusReport(checks, NOW, Thresholds(30 * unit, 30 * unit))


def test_the_page_is_self_contained_and_names_everything():
    page = html.page(report())
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<link" not in page and "<img" not in page
    for text in (
        "api1 crl crl.pem",
        "client bob",
        "ca Example API client CA",
        ">today<",
        "STATUS CRITICAL",
        "renewal 2027-",
    ):
        assert text in page, text


def test_the_timeline_spans_a_year_or_less_when_everything_ends_sooner():
    start, end = html.window(report())
    assert end - NOW == dt.timedelta(days=365)
    start, end = html.window(report(lifetimes_in_minutes=True))
    assert dt.timedelta(minutes=300) < end - NOW < dt.timedelta(days=365)


def test_the_page_is_written_atomically(tmp_path):
    target = tmp_path / "status.html"
    html.write_page(report(), target)
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["status.html"]


CHROMIUM = shutil.which("chromium")


@pytest.mark.required
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is missing: run scripts/setup.sh")
def test_chromium_renders_the_page(tmp_path):
    target = tmp_path / "status.html"
    html.write_page(report(), target)
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--user-data-dir=" + str(tmp_path / "profile"),
    ]
    dom = subprocess.run([*flags, "--dump-dom", target.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    for text in ("api1 server-cert CN=api1.lab.test", "client bob", "today", "STATUS CRITICAL"):
        assert text in dom, text
    shot = tmp_path / "status.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1100,700", target.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 10_000
    if os.environ.get("MTLS_DEPLOY_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["MTLS_DEPLOY_KEEP_SCREENSHOT"])
