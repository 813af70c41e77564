"""TLS: the self-signed pair, and certificate reload into a live SSLContext.

Handshakes run in memory (two `ssl.MemoryBIO` pairs), so the tests see exactly
which certificate a new connection is served, with no sockets or threads.
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest

from quotalang.server.metrics import Metrics
from quotalang.server.tls import CertReloader, Pem, issue, local_hosts, make_ca, self_signed


def served_certificate(server_context: ssl.SSLContext, ca: bytes, hostname: str = "localhost") -> bytes:
    """The DER certificate a client trusting `ca` is served by a new connection (verified)."""
    client_context = ssl.create_default_context(cadata=ca.decode())
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side, out, peer_in in (("client", client, c_out, s_in), ("server", server, s_out, c_in)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            break
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def write(folder: Path, pair: Pem) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    cert.write_bytes(pair.cert)
    key.write_bytes(pair.key)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_self_signed_makes_a_ca_and_a_pair_for_the_local_names(tmp_path: Path) -> None:
    made = self_signed(tmp_path, local_hosts("127.0.0.1"))
    assert made.created
    assert made.ca == tmp_path / "tls" / "ca.crt"
    assert stat.S_IMODE(made.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls" / "ca.key").stat().st_mode) == 0o600
    context = server_context(made.cert, made.key)
    ca = made.ca.read_bytes()
    for name in ("localhost", "127.0.0.1"):
        assert served_certificate(context, ca, name) == der(made.cert.read_bytes())


def test_self_signed_files_are_reused_while_they_fit(tmp_path: Path) -> None:
    first = self_signed(tmp_path, local_hosts("127.0.0.1"))
    pem = first.cert.read_bytes()
    again = self_signed(tmp_path, local_hosts("127.0.0.1"))
    assert not again.created
    assert again.cert.read_bytes() == pem
    other_host = self_signed(tmp_path, local_hosts("10.1.2.3"))
    assert other_host.created
    assert other_host.cert.read_bytes() != pem
    assert other_host.ca.read_bytes() == first.ca.read_bytes()  # same CA, new serving certificate


def test_a_wildcard_bind_adds_the_machine_name() -> None:
    import socket

    assert socket.gethostname() in local_hosts("0.0.0.0")
    assert local_hosts("10.0.0.5")[0] == "10.0.0.5"


@pytest.fixture
def ca() -> Pem:
    return make_ca()


def test_a_changed_pair_is_loaded_into_the_live_context(tmp_path: Path, ca: Pem) -> None:
    first = issue(ca, ["localhost"])
    cert, key = write(tmp_path, first)
    context = server_context(cert, key)
    metrics = Metrics()
    reloader = CertReloader(context, cert, key, metrics)
    assert reloader.check() is False  # unchanged
    assert served_certificate(context, ca.cert) == der(first.cert)

    second = issue(ca, ["localhost"])
    write(tmp_path, second)
    assert reloader.check() is True
    assert served_certificate(context, ca.cert) == der(second.cert)
    assert metrics.registry.get_sample_value("quotalang_tls_reloads_total") == 1


def test_a_half_written_pair_keeps_the_old_one_serving(tmp_path: Path, ca: Pem) -> None:
    first = issue(ca, ["localhost"])
    cert, key = write(tmp_path, first)
    context = server_context(cert, key)
    metrics = Metrics()
    reloader = CertReloader(context, cert, key, metrics)

    third = issue(ca, ["localhost"])
    cert.write_bytes(third.cert)  # the certificate is new, the key not yet
    assert reloader.check() is False
    assert served_certificate(context, ca.cert) == der(first.cert)
    assert metrics.registry.get_sample_value("quotalang_tls_reload_errors_total") == 1

    key.write_bytes(third.key)
    assert reloader.check() is True
    assert served_certificate(context, ca.cert) == der(third.cert)


def test_missing_files_are_reported_once(tmp_path: Path, ca: Pem) -> None:
    cert, key = write(tmp_path, issue(ca, ["localhost"]))
    context = server_context(cert, key)
    metrics = Metrics()
    reloader = CertReloader(context, cert, key, metrics)
    key.unlink()
    assert reloader.check() is False
    assert reloader.check() is False
    assert metrics.registry.get_sample_value("quotalang_tls_reload_errors_total") == 1


def test_the_live_context_is_swapped_on_the_event_loop_thread(tmp_path: Path, ca: Pem) -> None:
    """The swap sets the certificate, then the key: run beside the accepting loop, a connection
    accepted in between failed its handshake (seen under load in tests/e2e/test_cert_renewal.py)."""
    import asyncio
    import threading
    from typing import Any

    cert, key = write(tmp_path, issue(ca, ["localhost"]))
    context = server_context(cert, key)
    threads: list[str] = []
    original = context.load_cert_chain

    def recording(*args: Any, **kwargs: Any) -> None:
        threads.append(threading.current_thread().name)
        original(*args, **kwargs)

    context.load_cert_chain = recording  # type: ignore[method-assign]
    reloader = CertReloader(context, cert, key, interval=0.01)
    second = issue(ca, ["localhost"])

    async def main() -> None:
        task = asyncio.create_task(reloader.run())
        await asyncio.sleep(0.05)
        write(tmp_path, second)
        for _ in range(200):
            if threads:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(main())
    assert threads == [threading.main_thread().name]
    assert served_certificate(context, ca.cert) == der(second.cert)
