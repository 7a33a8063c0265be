"""A Mosquitto started from the shipped config/mosquitto files: password file, ACL template,
a loopback password listener and a TLS listener that requires client certificates."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.security.pki import Pki, make_pki
from tests.support.mosquitto import free_port, wait_port

SHIPPED = Path(__file__).parents[2] / "config" / "mosquitto"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HUB_A, HUB_B = "cg-hub-a", "cg-hub-b"
CONSUMER, OPERATOR = "consentgate-consumer", "consentgate-operator"
PASSWORDS = {HUB_A: "pw-a", HUB_B: "pw-b", CONSUMER: "pw-consumer", OPERATOR: "pw-operator"}


@dataclass
class SecureBroker:
    """The running broker: ``port`` (passwords) and ``tls_port`` (client certificates)."""

    workdir: Path
    port: int
    tls_port: int
    pki: Pki
    proc: subprocess.Popen[bytes]

    def password_file(self, user: str, password: str | None = None) -> Path:
        """Write ``user``'s password (or ``password``) to a 0600 file for a hub config."""
        path = self.workdir / f"{user}.password"
        path.write_text((password or PASSWORDS[user]) + "\n")
        path.chmod(0o600)
        return path

    def log(self) -> str:
        """Return the broker's log."""
        return (self.workdir / "mosquitto.log").read_text(errors="replace")


def shipped_config(workdir: Path, port: int, tls_port: int) -> str:
    """Return config/mosquitto/consentgate.conf with its paths and ports moved to the test's."""
    text = (SHIPPED / "consentgate.conf").read_text()
    for old, new in (
        ("/etc/mosquitto/consentgate/", f"{workdir}/"),
        ("/var/lib/mosquitto/", f"{workdir}/data/"),
        ("listener 1883 127.0.0.1\n", f"listener {port} 127.0.0.1\n"),
        ("listener 8883\n", f"listener {tls_port} 127.0.0.1\n"),
    ):
        assert old in text, f"the shipped config no longer has {old!r}"
        text = text.replace(old, new)
    user = "user root\n" if os.geteuid() == 0 else ""
    return f"{user}log_dest file {workdir}/mosquitto.log\nlog_type all\n{text}"


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    """Mosquitto configured from the shipped files, with hub, consumer and operator users."""
    workdir = tmp_path / "broker"
    (workdir / "data").mkdir(parents=True)
    pki = make_pki(workdir)
    cert, key = pki.issue("server", "localhost", server=True)
    cert.rename(workdir / "server.crt")
    key.rename(workdir / "server.key")
    passwd = workdir / "passwd"
    for user, password in PASSWORDS.items():
        flags = ["-c"] if not passwd.exists() else []
        subprocess.run([PASSWD, *flags, "-b", str(passwd), user, password], check=True)
    shutil.copy(SHIPPED / "acl.template", workdir / "acl")
    port, tls_port = free_port(), free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(shipped_config(workdir, port, tls_port))
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_port(port)
        wait_port(tls_port)
    except TimeoutError:
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"mosquitto did not start: {err.decode()}") from None
    yield SecureBroker(workdir, port, tls_port, pki, proc)
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()
