"""TLS mode: a self-signed CA made at start-up for 127.0.0.1 (§1.2: b24pysdk and the JS SDK need https)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import requests

from bitrix24_source.sandbox import Sandbox
from bitrix24_source.sandbox import tls as tls_module

from .conftest import StandInState


def test_https_with_the_sandbox_ca() -> None:
    with Sandbox(state=StandInState(), tls=True) as portal:
        assert portal.base_url.startswith("https://127.0.0.1:")
        ca = portal.ca_cert_path
        assert ca is not None and Path(ca).read_text().startswith("-----BEGIN CERTIFICATE-----")
        with requests.Session() as s:
            r = s.post(portal.webhook_url + "server.time", json={}, verify=ca)
            assert r.status_code == 200 and "result" in r.json()
            with pytest.raises(requests.exceptions.SSLError):
                s.post(portal.webhook_url + "server.time", json={}, verify=True)
            token = portal.oauth
            assert token.token_url.startswith("https://")
    assert not Path(ca).exists()  # the CA file goes away with the portal


def test_plain_http_client_is_refused_on_tls_port() -> None:
    with Sandbox(state=StandInState(), tls=True) as portal:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"http://127.0.0.1:{portal.port}/rest/1/x/server.time", json={}, timeout=5)
        # the server keeps serving after a failed handshake
        r = requests.post(portal.webhook_url + "server.time", json={}, verify=portal.ca_cert_path, timeout=5)
        assert r.status_code == 200


def test_no_tls_means_no_ca() -> None:
    with Sandbox(state=StandInState()) as portal:
        assert portal.ca_cert_path is None and portal.base_url.startswith("http://")


def test_clear_error_without_trustme(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "trustme":
            raise ImportError("No module named 'trustme'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(RuntimeError, match=r"bitrix24-dlt\[tls\]"):
        tls_module.make_tls("127.0.0.1")


def test_server_context_is_tls() -> None:
    material = tls_module.make_tls("127.0.0.1")
    try:
        assert isinstance(material.context, ssl.SSLContext)
    finally:
        material.directory.cleanup()
