"""Optional TLS for the sandbox: a throw-away CA and a certificate for 127.0.0.1, made at start-up.

b24pysdk and the official JS SDK only speak https (§1.2), so peer-client tests need it. Certificates come
from ``trustme`` (the ``[tls]`` extra) rather than hand-rolled X.509 code.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """A server context plus where the CA certificate was written (give it to clients as ``verify``)."""

    context: ssl.SSLContext
    ca_cert_path: str
    directory: tempfile.TemporaryDirectory[str]


def make_tls(host: str) -> TlsMaterial:
    """Create a CA and a server certificate for ``host`` and return the server-side SSL context.

    Raises:
        RuntimeError: when ``trustme`` is not installed.
    """
    try:
        import trustme
    except ImportError as exc:
        raise RuntimeError(
            "Sandbox TLS mode needs the optional 'trustme' package: pip install 'bitrix24-dlt[tls]'"
        ) from exc
    ca = trustme.CA()
    names = [host] if host in ("localhost",) else [host, "localhost"]
    server_cert = ca.issue_cert(*names)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    directory = tempfile.TemporaryDirectory(prefix="bitrix24-sandbox-tls-")
    ca_path = Path(directory.name) / "sandbox-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return TlsMaterial(context=context, ca_cert_path=str(ca_path), directory=directory)
