"""One sslyze scan of an mTLS host, printed as ONE JSON document on stdout.

Runs ONLY under the scanners' own virtualenv (``.venv-scanners/bin/python``, made by
scripts/setup.sh from requirements-scanners.lock): sslyze pins an older cryptography than the
product, so it stays out of ``.venv``. test_tls_quality.py runs it and asserts on the JSON:

- ``scan_status``, ``connectivity_error``: sslyze's verdict on reaching the server;
- ``mozilla_compliance``: ``{"ok": true, "issues": {}}``, or ``ok`` false and sslyze's issues,
  checked against the guideline file given (Mozilla "intermediate" 6.0);
- ``http_headers``: the Strict-Transport-Security header (``max_age`` ...) or null;
- ``cipher_suites``: per sslyze scan command (``ssl_2_0_cipher_suites`` ... ``tls_1_3_...``),
  whether the protocol version is supported and the names of the suites accepted;
- ``certificate_info``: per certificate deployment, the received chain as PEM (leaf first) and
  the path validation result for each trust store (the CA file given is "Supplied CA file").

Each scan command's entry has an ``error`` (null when it completed). Exit status 0 whenever
the JSON was printed, whatever it says; the tests judge it.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from sslyze import (
    CertificateInfoExtraArgument,
    ClientAuthenticationCredentials,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    ServerNotCompliantWithTlsConfiguration,
    ServerScanResultIncomplete,
    TlsConfigurationAsJson,
    check_server_against_tls_configuration,
)

# sslyze's bundled public trust stores hold an old root with a negative serial number.
warnings.filterwarnings("ignore", "Parsed a serial number which wasn't positive")

CIPHER_SUITE_SCANS = [
    "ssl_2_0_cipher_suites",
    "ssl_3_0_cipher_suites",
    "tls_1_0_cipher_suites",
    "tls_1_1_cipher_suites",
    "tls_1_2_cipher_suites",
    "tls_1_3_cipher_suites",
]


def trace_text(trace) -> str | None:
    return "".join(trace.format()) if trace else None


def error_of(attempt) -> str | None:
    """Why a scan command has no result; None when it completed."""
    if attempt.status == ScanCommandAttemptStatusEnum.COMPLETED and attempt.result is not None:
        return None
    reason = attempt.error_reason.name if attempt.error_reason else attempt.status.name
    return f"{reason}\n{trace_text(attempt.error_trace) or ''}".strip()


def scan(args: argparse.Namespace):
    credentials = ClientAuthenticationCredentials(args.client_cert, args.client_key)
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(args.server_name, args.port, ip_address=args.ip),
        network_configuration=ServerNetworkConfiguration(
            args.server_name, tls_client_auth_credentials=credentials
        ),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER | {ScanCommand.HTTP_HEADERS},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=args.ca_file)
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = scanner.get_results()
    return result


def compliance(result, guideline_file: Path) -> dict:
    guideline = TlsConfigurationAsJson.model_validate_json(guideline_file.read_text())
    try:
        check_server_against_tls_configuration(result, guideline)
    except ServerNotCompliantWithTlsConfiguration as error:
        return {"ok": False, "issues": dict(error.issues)}
    except ServerScanResultIncomplete as error:
        return {"ok": False, "issues": {"scan incomplete": str(error)}}
    return {"ok": True, "issues": {}}


def http_headers(attempt) -> dict:
    headers = attempt.result
    hsts = headers.strict_transport_security_header if headers else None
    return {
        "error": error_of(attempt),
        "http_error": trace_text(headers.http_error_trace) if headers else None,
        "strict_transport_security": None
        if hsts is None
        else {
            "max_age": hsts.max_age,
            "include_subdomains": hsts.include_subdomains,
            "preload": hsts.preload,
        },
    }


def cipher_suites(attempt) -> dict:
    scanned = attempt.result
    return {
        "error": error_of(attempt),
        "tls_version_supported": scanned.is_tls_version_supported if scanned else None,
        "accepted": [s.cipher_suite.name for s in scanned.accepted_cipher_suites]
        if scanned
        else None,
    }


def certificate_info(attempt) -> dict:
    info = attempt.result
    deployments = [
        {
            "received_chain_pem": [
                cert.public_bytes(Encoding.PEM).decode() for cert in d.received_certificate_chain
            ],
            "path_validation": [
                {
                    "trust_store": p.trust_store.name,
                    "ok": p.was_validation_successful,
                    "error": p.validation_error,
                }
                for p in d.path_validation_results
            ],
        }
        for d in (info.certificate_deployments if info else [])
    ]
    return {"error": error_of(attempt), "deployments": deployments}


def report(result, guideline_file: Path) -> dict:
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        return {
            "scan_status": result.scan_status.name,
            "connectivity_error": trace_text(result.connectivity_error_trace),
        }
    scanned = result.scan_result
    return {
        "scan_status": result.scan_status.name,
        "connectivity_error": None,
        "mozilla_compliance": compliance(result, guideline_file),
        "http_headers": http_headers(scanned.http_headers),
        "cipher_suites": {
            name: cipher_suites(getattr(scanned, name)) for name in CIPHER_SUITE_SCANS
        },
        "certificate_info": certificate_info(scanned.certificate_info),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-name", required=True, help="SNI and HTTP Host name")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ip", required=True, help="address to connect to")
    parser.add_argument("--client-cert", type=Path, required=True)
    parser.add_argument("--client-key", type=Path, required=True)
    parser.add_argument("--ca-file", type=Path, required=True, help="the server CA: trust store")
    parser.add_argument("--guideline", type=Path, required=True, help="Mozilla TLS config JSON")
    args = parser.parse_args(argv)
    json.dump(report(scan(args), args.guideline), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
