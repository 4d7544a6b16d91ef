"""wss:// between the real sync client and the reference backend, with certificates made here by
`cryptography`: a test CA, a server certificate for 127.0.0.1/localhost, client certificates.

Attempts are counted at the server side: the backend's handshake counter, or, for failures
inside the TLS handshake that never reach HTTP, a TCP proxy in front of it (CutProxy.accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from carlinkd.cli import main
from carlinkd.config import build_config
from carlink_cloud.errors import CloudError
from carlinkd.errors import ConfigError
from carlinkd.hub import Hub
from carlinkd.sync.service import SyncService
from carlink_cloud import CloudServer, CloudStore
from carlink_cloud.devpki import issue, make_ca, write
from carlink_cloud.netem import CutProxy
from support.sync_car import WAIT_S, Car, running_car

BACKOFF = {"backoff_initial_s": 0.1, "backoff_max_s": 10.0}
ROOT = Path(__file__).resolve().parents[3]


# -- certificates (carlink_cloud/devpki.py, the same code as `carlinkd cloud dev-certs`) --------

@dataclass(frozen=True)
class Pki:
    ca: Path               # the fleet CA: issues the backend's and the cars' certificates
    other_ca: Path         # a CA nobody trusts here
    server: tuple[Path, Path]      # CN cloud, SAN 127.0.0.1 + localhost
    wrong_name: tuple[Path, Path]  # issued by the CA, but for cloud.example only
    self_signed: tuple[Path, Path]
    car_a: tuple[Path, Path]       # client certificate, CN car-a
    car_b: tuple[Path, Path]       # client certificate, CN car-b
    stranger: tuple[Path, Path]    # client certificate CN car-a from the other CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = make_ca("carlinkd test fleet CA"), make_ca("someone else's CA")
    return Pki(
        write(d, "ca", ca)[0], write(d, "other", other)[0],
        write(d, "server", issue(ca, "cloud", server=True, names=("127.0.0.1", "localhost"))),
        write(d, "wrong", issue(ca, "cloud", server=True, names=("cloud.example",))),
        write(d, "self", issue(None, "cloud", server=True, names=("127.0.0.1",))),
        write(d, "car-a", issue(ca, "car-a", server=False)),
        write(d, "car-b", issue(ca, "car-b", server=False)),
        write(d, "stranger", issue(other, "car-a", server=False)))


# -- harness ------------------------------------------------------------------------------------

@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    store = CloudStore(tmp_path / "cloud.db")
    out = {name: store.add_device(name) for name in ("car-a", "car-b")}
    store.close()
    return out


@contextlib.asynccontextmanager
async def car(state: Path, url: str, token: str, **sync: Any) -> AsyncIterator[Car]:
    async with running_car(state, url, token, BACKOFF, **sync) as c:
        yield c


@contextlib.asynccontextmanager
async def proxied(server: CloudServer) -> AsyncIterator[CutProxy]:
    proxy = CutProxy("127.0.0.1", server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def wss(port: int, host: str = "127.0.0.1") -> str:
    return f"wss://{host}:{port}/"


async def count_for(seconds: float, counter: Callable[[], int]) -> int:
    before = counter()
    await asyncio.sleep(seconds)
    return counter() - before


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records
             if r.levelno >= logging.WARNING and text in r.getMessage()]
    assert all("\n" not in line for line in lines)  # one line each, no traceback
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("carlinkd.sync")]
    return lines


# -- server certificate -------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_wss_with_ca_file_connects_and_syncs(tmp_path: Path, pki: Pki,
                                                   tokens: dict[str, str], host: str) -> None:
    async with CloudServer(tmp_path / "cloud.db", tls_cert=pki.server[0],
                           tls_key=pki.server[1]) as server:
        assert server.url.startswith("wss://")
        async with car(tmp_path / "a", wss(server.port, host), tokens["car-a"],
                       ca_file=str(pki.ca)) as a:
            await a.wait_state("online")
            await a.svc.submit("alert", "alert", {"name": "tls_ok"})
            async def stored() -> None:
                while not server.store.upstream_log("car-a", "alert"):  # type: ignore[union-attr]
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(stored(), WAIT_S)


@pytest.mark.parametrize("case", ["other CA", "system store", "wrong name"])
async def test_refused_server_certificate_is_one_error_line_and_backs_off(
        tmp_path: Path, pki: Pki, tokens: dict[str, str], case: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cert = pki.wrong_name if case == "wrong name" else pki.server
    ca = {"other CA": {"ca_file": str(pki.other_ca)}, "system store": {},
          "wrong name": {"ca_file": str(pki.ca)}}[case]
    async with CloudServer(tmp_path / "cloud.db", tls_cert=cert[0], tls_key=cert[1]) as server, \
            proxied(server) as proxy:
        async with car(tmp_path / "a", wss(proxy.port), tokens["car-a"], **ca) as a:
            st = await a.wait_state("untrusted")
            attempts = await count_for(1.5, lambda: proxy.accepted)
            client = a.svc.client
            assert client is not None
            assert client.connections == 0 and server.counters["handshakes"] == 0
    # Backoff from 0.1 s doubling: at most ~5 attempts in 1.5 s (a fixed 0.1 s retry: 15).
    assert 1 <= attempts <= 6, attempts
    assert client.last_delay >= 0.2  # grew from the 0.1 s start
    want = {"other CA": "unable to get local issuer certificate",
            "system store": "unable to get local issuer certificate",
            "wrong name": "IP address mismatch, certificate is not valid for '127.0.0.1'"}[case]
    assert st.detail.startswith("TLS: server certificate refused: ") and want in st.detail, \
        st.detail
    assert ("sync.ca_file" in st.detail) == (case != "system store")
    # Every attempt is logged, but as an error once; the repeats are info.
    levels = [r.levelno for r in caplog.records if "-> untrusted" in r.getMessage()]
    assert levels[0] == logging.ERROR and set(levels[1:]) == {logging.INFO}, levels
    assert len(errors(caplog, "server certificate refused")) == 1


async def test_verify_tls_false_connects_to_a_self_signed_server_with_a_warning(
        tmp_path: Path, pki: Pki, tokens: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with CloudServer(tmp_path / "cloud.db", tls_cert=pki.self_signed[0],
                           tls_key=pki.self_signed[1]) as server:
        async with car(tmp_path / "a", server.url, tokens["car-a"], verify_tls=False) as a:
            await a.wait_state("online")
        async with car(tmp_path / "b", server.url, tokens["car-b"]) as b:  # verification on
            await b.wait_state("untrusted")
    assert errors(caplog, "TLS verification of wss://127.0.0.1")  # the start-up warning


# -- client certificates (mutual TLS) -----------------------------------------------------------

@pytest.fixture
async def mtls(tmp_path: Path, pki: Pki, tokens: dict[str, str]) -> AsyncIterator[CloudServer]:
    async with CloudServer(tmp_path / "cloud.db", tls_cert=pki.server[0], tls_key=pki.server[1],
                           client_ca=pki.ca) as server:
        yield server


async def test_client_certificate_and_token_of_the_same_car_sync(
        tmp_path: Path, pki: Pki, tokens: dict[str, str], mtls: CloudServer) -> None:
    async with car(tmp_path / "a", mtls.url, tokens["car-a"], ca_file=str(pki.ca),
                   client_cert=str(pki.car_a[0]), client_key=str(pki.car_a[1])) as a:
        await a.wait_state("online")
        assert mtls.connected_devices() == ["car-a"]


@pytest.mark.parametrize("case, why", [
    ("no certificate", "HTTP 403 client certificate required"),
    ("another car's certificate", "HTTP 403 client certificate is for 'car-b', the token for "
                                  "'car-a'"),
])
async def test_missing_or_mismatched_client_certificate_is_unauthorized_and_retried_rarely(
        tmp_path: Path, pki: Pki, tokens: dict[str, str], mtls: CloudServer, case: str,
        why: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cert = {} if case == "no certificate" else {"client_cert": str(pki.car_b[0]),
                                                 "client_key": str(pki.car_b[1])}
    async with car(tmp_path / "a", mtls.url, tokens["car-a"], ca_file=str(pki.ca),
                   auth_retry_s=1.0, **cert) as a:
        st = await a.wait_state("unauthorized")
        assert st.detail.startswith(why), st.detail
        assert await count_for(0.8, lambda: mtls.counters["handshakes"]) == 0  # no hammering

        async def retried() -> None:  # after auth_retry_s (1.0 s, spread to at most 1.25 s)
            while mtls.counters["handshakes"] < 2:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(retried(), WAIT_S)
        assert mtls.counters["handshakes"] == 2
    assert mtls.counters["connections"] == 0
    assert len(errors(caplog, "-> unauthorized")) == 1  # the retry's refusal is info


async def test_client_certificate_from_an_unknown_ca_fails_the_handshake_with_backoff(
        tmp_path: Path, pki: Pki, tokens: dict[str, str], mtls: CloudServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with proxied(mtls) as proxy:
        async with car(tmp_path / "a", wss(proxy.port), tokens["car-a"], ca_file=str(pki.ca),
                       client_cert=str(pki.stranger[0]),
                       client_key=str(pki.stranger[1])) as a:
            st = await a.wait_state("waiting")
            attempts = await count_for(1.5, lambda: proxy.accepted)
    assert "may have refused the client certificate" in st.detail
    assert str(pki.stranger[0]) in st.detail
    assert 1 <= attempts <= 6, attempts
    assert mtls.counters["handshakes"] == 0  # never got past TLS
    assert len(errors(caplog, "may have refused the client certificate")) == 1


# -- bad configuration --------------------------------------------------------------------------

def _bad_files(tmp_path: Path, pki: Pki) -> dict[str, tuple[dict[str, str], str, str]]:
    not_pem = tmp_path / "notpem.crt"
    not_pem.write_text("hello\n")
    return {
        "ca missing": ({"ca_file": str(tmp_path / "nope.crt")}, "sync.ca_file",
                       "file not found"),
        "ca not PEM": ({"ca_file": str(not_pem)}, "sync.ca_file", "not a PEM file"),
        "ca is a directory": ({"ca_file": str(tmp_path)}, "sync.ca_file", "is a directory"),
        "ca holds a key": ({"ca_file": str(pki.car_a[1])}, "sync.ca_file",
                           "no usable CA certificate"),
        "cert missing": ({"client_cert": str(tmp_path / "nope.crt"),
                          "client_key": str(pki.car_a[1])}, "sync.client_cert",
                         "file not found"),
        "key not PEM": ({"client_cert": str(pki.car_a[0]), "client_key": str(not_pem)},
                        "sync.client_key", "not a PEM file"),
        "key of another cert": ({"client_cert": str(pki.car_a[0]),
                                 "client_key": str(pki.car_b[1])}, "sync.client_cert",
                                "unusable as client certificate"),
        "key without cert": ({"client_key": str(pki.car_a[1])}, "sync.client_key",
                             "without sync.client_cert"),
    }


async def test_unusable_tls_files_are_a_config_error_naming_the_file(tmp_path: Path,
                                                                     pki: Pki) -> None:
    for case, (files, key, problem) in _bad_files(tmp_path, pki).items():
        cfg = build_config([("t", {"sync": {"url": "wss://127.0.0.1:9/", "token": "t",
                                            **files}})])
        svc = SyncService(cfg, Hub(), tmp_path / "car")
        with pytest.raises(ConfigError) as err:
            await svc.start()
        message = str(err.value)
        path = next(iter(v for k, v in files.items() if f"sync.{k}" == key))
        assert message.startswith(f"{path}: {key}: ") and problem in message, (case, message)
        assert "\n" not in message
        assert svc.db is None  # checked before anything was opened


def test_daemon_start_with_a_missing_ca_file_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "carlinkd.toml"
    config.write_text(f"""
[daemon]
state_dir = "{tmp_path / 'state'}"
[can]
interface = "virtual"
channel = "tls-config-test"
[hmi]
enabled = false
[sync]
url = "wss://127.0.0.1:9/"
token = "t"
ca_file = "{tmp_path / 'missing-ca.pem'}"
""")
    assert main(["--config", str(config), "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"carlinkd: config error: {tmp_path / 'missing-ca.pem'}: "
                                    "sync.ca_file: file not found"), err


def test_backend_with_unusable_tls_files_is_one_line_error(
        tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cloud.db")
    cases = [
        (["--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", str(pki.server[1])],
         f"--tls-cert {tmp_path / 'nope.crt'}: file not found"),
        (["--tls-cert", str(pki.server[0]), "--tls-key", str(pki.car_a[1])],
         f"--tls-cert {pki.server[0]}: unusable with --tls-key"),
        (["--tls-cert", str(pki.server[0]), "--tls-key", str(pki.server[1]), "--client-ca",
          str(pki.server[1])], "--client-ca"),
        (["--client-ca", str(pki.ca)], "--client-ca needs --tls-cert"),
    ]
    for argv, expected in cases:
        assert main(["cloud", "serve", "--db", db, "--port", "0", *argv]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("carlink-cloud: ") and expected in err and "\n" not in err, err
    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(b"\x00\x01 not a certificate")
    with pytest.raises(CloudError, match=f"--tls-cert {garbage}: not a PEM file"):
        CloudServer(tmp_path / "cloud.db", tls_cert=garbage, tls_key=pki.server[1])


async def test_dev_certs_and_cloud_serve_with_client_ca_from_the_command_line(
        tmp_path: Path, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    pki = tmp_path / "pki"
    assert await asyncio.to_thread(main, ["cloud", "dev-certs", str(pki), "--device", "car-a"]) \
        == 0
    assert "car-a_key: " in capsys.readouterr().out
    backend = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "carlink_cloud", "serve", "--db", str(tmp_path / "cloud.db"),
        "--port", "0", "--tls-cert", str(pki / "server.crt"), "--tls-key",
        str(pki / "server.key"), "--client-ca", str(pki / "ca.crt"),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    try:
        assert backend.stdout is not None
        line = (await asyncio.wait_for(backend.stdout.readline(), WAIT_S)).decode()
        assert line.startswith("listening on wss://127.0.0.1:"), line
        url = line.split()[-1]
        async with car(tmp_path / "a", url, tokens["car-a"], ca_file=str(pki / "ca.crt"),
                       client_cert=str(pki / "car-a.crt"),
                       client_key=str(pki / "car-a.key")) as a:
            await a.wait_state("online")
    finally:
        backend.terminate()
        assert await backend.wait() == 0
