"""The bundle's ``README.txt``: the URL of each API the client may call, and short recipes for
curl, Python (requests, httpx), Node, Java and browsers, as tested against the lab
(``tests/integration/test_consumer_recipes.py`` runs them from this text).

Each recipe is a title line ending in ``:`` and its lines indented by four spaces; a recipe's
file names are the bundle's own, so it runs in the bundle's folder as it is. Without
``api-ca.crt`` (the API's certificate is from a public CA) nothing names it; without a .p12
(``--no-p12``) Node takes the PEM files and the Java and browser recipes are left out.
"""

from dataclasses import dataclass
from datetime import datetime

PLACEHOLDER = "<server_name>"
PATH = "/whoami"  # the example applications' path: who the API sees


@dataclass(frozen=True)
class ReadmeFacts:
    """What the README says: the client, its APIs (``host`` or ``host:port``), whether the
    bundle carries ``api-ca.crt``, and the .p12's kind (``None``: no .p12)."""

    name: str
    serial: str
    not_after: datetime
    apis: tuple[str, ...]
    api_ca: bool
    p12_kind: str | None


def api_address(server_name: str, https_port: int | str | None) -> str:
    """``api1.example.com:8441``, or the name alone for port 443.

    Example: ``api_address("api.example.com", 443)`` -> ``"api.example.com"``
    """
    port = str(https_port or 443)
    return server_name if port == "443" else f"{server_name}:{port}"


def readme(facts: ReadmeFacts) -> str:
    """The whole README text."""
    url = f"https://{(facts.apis or (PLACEHOLDER,))[0]}{PATH}"
    parts = [_head(facts), _curl(facts, url), _python(facts, url), _node(facts, url)]
    if facts.p12_kind:
        parts += [_java(facts, url), _browsers(facts, url)]
    return "\n".join([*parts, _files(facts)])


def _head(facts: ReadmeFacts) -> str:
    until = f"{facts.not_after:%Y-%m-%d}"
    head = f"Client certificate for {facts.name} (serial {facts.serial}, valid until {until})\n\n"
    if facts.apis:
        urls = "".join(f"    https://{api}/\n" for api in facts.apis)
        head += f"The API{'s' if len(facts.apis) > 1 else ''} you may call with it:\n{urls}"
    else:
        head += (f"The API you may call: https://{PLACEHOLDER}/\n(replace <server_name> with "
                 "the API's host name, and add :<port> unless its port is 443)\n")  # fmt: skip
    head += (
        f"\nEach recipe runs in this folder and calls {PATH}, the example application's "
        "path:\nuse your API's own paths.\n"
    )
    if facts.api_ca:
        return head
    return head + (
        "\nThe API's server certificate is from a public CA: your system's trust store "
        "verifies it.\n"
    )


def _curl(facts: ReadmeFacts, url: str) -> str:
    cacert = " --cacert api-ca.crt" if facts.api_ca else ""
    return f"curl:\n    curl --cert {facts.name}.crt --key {facts.name}.key{cacert} {url}\n"


def _python(facts: ReadmeFacts, url: str) -> str:
    name = facts.name
    verify = ', verify="api-ca.crt"' if facts.api_ca else ""
    cafile = 'cafile="api-ca.crt"' if facts.api_ca else ""
    return (
        "Python (requests):\n"
        "    import requests\n"
        f'    answer = requests.get("{url}", cert=("{name}.crt", "{name}.key"){verify})\n'
        "    print(answer.text)\n"
        "\nPython (httpx):\n"
        "    import ssl, httpx\n"
        f"    context = ssl.create_default_context({cafile})\n"
        f'    context.load_cert_chain("{name}.crt", "{name}.key")\n'
        f'    print(httpx.get("{url}", verify=context).text)\n'
    )


def _node(facts: ReadmeFacts, url: str) -> str:
    name = facts.name
    if facts.p12_kind:
        identity = (f'pfx: fs.readFileSync("{name}.p12"), '
                    f'passphrase: fs.readFileSync("{name}.p12.pass", "utf8")')  # fmt: skip
    else:
        identity = f'cert: fs.readFileSync("{name}.crt"), key: fs.readFileSync("{name}.key")'
    ca = ', ca: fs.readFileSync("api-ca.crt")' if facts.api_ca else ""
    return (
        "Node (18 and later):\n"
        '    const fs = require("fs"), https = require("https");\n'
        f"    const options = {{{identity}{ca}}};\n"
        f'    https.get("{url}", options, (answer) => answer.pipe(process.stdout));\n'
    )


JAVA = """\
with Whoami.java:
    import java.net.URI;
    import java.net.http.*;
    import java.nio.file.*;
    import java.security.KeyStore;
    import javax.net.ssl.*;

    public class Whoami {{
      public static void main(String[] args) throws Exception {{
        char[] password = Files.readString(Path.of("{name}.p12.pass")).toCharArray();
        KeyStore identity = KeyStore.getInstance("PKCS12");
        identity.load(Files.newInputStream(Path.of("{name}.p12")), password);
        KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keys.init(identity, password);
{trust}\
        SSLContext tls = SSLContext.getInstance("TLS");
        tls.init(keys.getKeyManagers(), {managers}, null);
        HttpClient client = HttpClient.newBuilder().sslContext(tls).build();
        HttpRequest request = HttpRequest.newBuilder(URI.create("{url}")).build();
        System.out.println(client.send(request, HttpResponse.BodyHandlers.ofString()).body());
      }}
    }}
"""
JAVA_TRUST = """\
        KeyStore roots = KeyStore.getInstance("PKCS12");
        roots.load(Files.newInputStream(Path.of("api-ca.p12")), "changeit".toCharArray());
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(roots);
"""
KEYTOOL = (
    "    keytool -importcert -noprompt -alias api-ca -file api-ca.crt -keystore api-ca.p12 "
    "-storetype PKCS12 -storepass changeit\n"
)


def _java(facts: ReadmeFacts, url: str) -> str:
    """keytool and ``java Whoami.java`` (Java runs a single source file), then the file."""
    trust, managers = (JAVA_TRUST, "trust.getTrustManagers()") if facts.api_ca else ("", "null")
    source = JAVA.format(name=facts.name, url=url, trust=trust, managers=managers)
    keytool = KEYTOOL if facts.api_ca else ""
    title = "Java (17 and later" + (
        "; keytool makes a truststore from api-ca.crt" if facts.api_ca else ""
    )
    return f"{title}), in a shell:\n{keytool}    java Whoami.java\n\n{source}"


def _browsers(facts: ReadmeFacts, url: str) -> str:
    name, ca = facts.name, facts.api_ca
    trust = " and trust\napi-ca.crt as an authority for websites" if ca else ""
    firefox = "; Authorities >\n      Import api-ca.crt, trusted to identify websites" if ca else ""
    nss_ca = "      certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n api-ca -i api-ca.crt\n"
    return (
        f"Browsers: import {name}.p12 (its password is in {name}.p12.pass) as your certificate"
        f"{trust}, then open {url}\n"
        "    Firefox: Settings > Privacy & Security > View Certificates: Your Certificates >\n"
        f"      Import {name}.p12{firefox}\n"
        "    Chromium and Chrome on Linux (their NSS database):\n"
        f"      pk12util -d sql:$HOME/.pki/nssdb -i {name}.p12 -w {name}.p12.pass\n"
        + (nss_ca if ca else "")
        + "    macOS keychains and older Windows want the legacy .p12: ask for one (--p12-legacy)\n"
    )


def _files(facts: ReadmeFacts) -> str:
    name = facts.name
    rows = [(f"{name}.key", "private key (keep it secret, mode 0600)"),
            (f"{name}.crt", "client certificate")]  # fmt: skip
    if facts.api_ca:
        rows.append(("api-ca.crt", "the CA that signed the API's server certificate"))
    if facts.p12_kind:
        rows += [
            (f"{name}.p12", f"key + certificate for browsers and keychains ({facts.p12_kind})"),
            (f"{name}.p12.pass", "the .p12 password (no newline at its end: read it as it is)"),
        ]
    width = max(len(file) for file, _ in rows) + 2
    text = "Files:\n" + "".join(f"    {file:<{width}}{what}\n" for file, what in rows)
    if not facts.p12_kind:
        return text
    verifies = "every client also needs api-ca.crt to verify the API"
    if not facts.api_ca:
        verifies = "your system's trust store verifies the API"
    return text + (
        f"\n{name}.p12 carries your key, your certificate and the client CA that signed it "
        f"(your\nchain), not the API's server CA: {verifies}.\n"
    )
