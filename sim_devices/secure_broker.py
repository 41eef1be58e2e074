"""A Mosquitto as the repository's example configures it: TLS, a password per user and the
per-row ACL of config/mosquitto/, in a folder of its own on a free loopback port.

For the MQTT security tests and the fault campaign, which also expire and renew its
certificate and rotate a user's password (the broker's file and the client's side), then
restart it so clients must connect again. Certificates come from `scripts/make-dev-certs.sh`;
an expired one is signed by the same CA with `openssl ca` (notAfter in 2020).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ems.broker import free_port, mosquitto_path
from ems.mqtt_auth import client_kwargs_as
from ems.topology import MqttConfig

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER = "ems-controller"


def tools_missing() -> str | None:
    missing = [t for t, p in (("mosquitto", mosquitto_path()), ("mosquitto_passwd", shutil.which("mosquitto_passwd")),
                              ("openssl", shutil.which("openssl"))) if p is None]
    return ", ".join(missing) or None


@dataclass
class SecureBroker:
    port: int
    dir: Path
    prefix: str
    passwords: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def site_mqtt(self) -> dict[str, Any]:
        """The controller's `mqtt:` section: TLS against the CA, its password from a file."""
        return {"url": self.url, "topic_prefix": self.prefix, "username": CONTROLLER,
                "password_file": str(self.dir / f"{CONTROLLER}.password"),
                "tls": {"ca_file": str(self.dir / "ca.crt"), "cert_file": str(self.dir / f"{CONTROLLER}.crt"),
                        "key_file": str(self.dir / f"{CONTROLLER}.key")}}

    def mqtt(self, **kw: Any) -> MqttConfig:
        return MqttConfig.model_validate({**self.site_mqtt(), **kw})

    def as_user(self, user: str, password: str | None = None, identifier: str | None = None) -> dict[str, Any]:
        return client_kwargs_as(self.mqtt(), identifier=identifier or f"test-{user}-{secrets.token_hex(3)}",
                                username=user, password_value=self.passwords[user] if password is None else password)

    # --- running ---------------------------------------------------------------------
    def start(self) -> None:
        log = (self.dir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([str(mosquitto_path()), "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {(self.dir / 'mosquitto.log').read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None

    # --- what the campaign does to it ------------------------------------------------
    def rotate_password(self, user: str = CONTROLLER) -> str:
        """A new password in the broker's file and in the user's password file (the broker reads its
        file at start: restart it, and every client must log in again)."""
        new = secrets.token_urlsafe(16)
        subprocess.run(["mosquitto_passwd", "-b", str(self.dir / "passwd"), user, new], check=True,
                       capture_output=True)
        (self.dir / f"{user}.password").write_text(new + "\n")
        self.passwords[user] = new
        return new

    def expire_certificate(self) -> None:
        """The broker's certificate replaced by one from the same CA and key that expired in 2020."""
        d = self.dir
        if not (d / "server.crt.valid").exists():
            shutil.copy(d / "server.crt", d / "server.crt.valid")
        (d / "ca.cnf").write_text(_CA_CNF)
        (d / "index.txt").write_text("")
        (d / "serial").write_text(f"{secrets.randbelow(2**31) + 4096:08X}\n")  # hex, an even number of digits
        (d / "s.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                                 "keyUsage=critical,digitalSignature\n")
        subprocess.run(["openssl", "req", "-new", "-key", "server.key", "-subj", "/CN=server", "-out", "s.csr"],
                       cwd=d, check=True, capture_output=True)
        subprocess.run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
                        "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", "s.ext",
                        "-in", "s.csr", "-out", "server.crt", "-notext"], cwd=d, check=True, capture_output=True)

    def renew_certificate(self) -> None:
        shutil.copy(self.dir / "server.crt.valid", self.dir / "server.crt")


_CA_CNF = """[ca]
default_ca = dev
[dev]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
"""


def secure_broker(d: Path, prefix: str, users: list[str]) -> SecureBroker:
    """Certificates, passwords, the example ACL and config in `d` (the ACL's `ems/` topics moved
    under `prefix`), for a free port; not started."""
    subprocess.run([str(ROOT / "scripts" / "make-dev-certs.sh"), str(d), CONTROLLER], check=True, capture_output=True)
    passwords = {u: secrets.token_urlsafe(16) for u in users}
    passwd = d / "passwd"
    for i, (user, pw) in enumerate(passwords.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, pw], check=True,
                       capture_output=True)
    (d / f"{CONTROLLER}.password").write_text(passwords[CONTROLLER] + "\n")
    (d / "sim-passwords").write_text("".join(f"{u}:{pw}\n" for u, pw in passwords.items()))
    (d / "acl").write_text(re.sub(r"(?m)^(topic|pattern) (read|write|readwrite) ems/", rf"\1 \2 {prefix}/",
                                  (ROOT / "config" / "mosquitto" / "acl").read_text()))
    port = free_port()
    conf = (ROOT / "config" / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("/etc/mosquitto/ems", str(d)).replace("listener 8883", f"listener {port} 127.0.0.1")
    if os.geteuid() == 0:
        conf += "user root\n"  # as root Mosquitto would drop to user mosquitto, who cannot read the tmp key
    (d / "mosquitto.conf").write_text(conf)
    return SecureBroker(port, d, prefix, passwords)
