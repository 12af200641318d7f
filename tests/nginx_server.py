"""Run a real nginx on free loopback ports with the site configuration that
``docs/deploying.rst`` shows (``docs/nginx/dispatch.conf``), and make the
wildcard certificate it needs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import typing as t
from pathlib import Path

from .servers import stop

NGINX = os.environ.get("DISPATCH_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "openssl"
#: The site configuration, as the deploying page includes it.
DOCS_CONF = Path(__file__).resolve().parent.parent / "docs" / "nginx" / "dispatch.conf"

#: The documented values the tests replace, with how often each occurs, so a
#: change to the page's configuration cannot slip past the tests unnoticed.
#: Only ports and file paths change; every other line is served as written.
PLACEHOLDERS = {
    "listen 80": 2,  # -> listen 127.0.0.1:<http port>
    "listen 443": 2,  # -> listen 127.0.0.1:<https port>
    "server 127.0.0.1:8000": 1,  # -> the test's gunicorn
    "/etc/letsencrypt/live/example.com/": 2,  # -> the test's certificate folder
}

# The rest of an nginx.conf that /etc/nginx/nginx.conf would give: every file
# nginx writes goes to the test's folder.
_MAIN = """\
{user}daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{
    worker_connections 256;
}}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


def missing() -> str | None:
    """Why the nginx tests cannot run here, or ``None`` if they can."""
    if not (shutil.which(NGINX) or os.path.exists(NGINX)):
        return f"nginx not found at {NGINX} (apt-get install nginx)"
    if shutil.which(OPENSSL) is None:
        return "openssl not found (apt-get install openssl)"
    return None


def site_config(*, upstream: int, http: int, https: int, tls: Path) -> str:
    """``docs/nginx/dispatch.conf`` with its ports and certificate folder
    replaced by the test's."""
    text = DOCS_CONF.read_text()
    for placeholder, count in PLACEHOLDERS.items():
        found = text.count(placeholder)
        assert found == count, f"{DOCS_CONF}: {placeholder!r} {found} times, expected {count}"
    return (
        text.replace("listen 80", f"listen 127.0.0.1:{http}")
        .replace("listen 443", f"listen 127.0.0.1:{https}")
        .replace("server 127.0.0.1:8000", f"server 127.0.0.1:{upstream}")
        .replace("/etc/letsencrypt/live/example.com/", f"{tls}/")
    )


def make_certificates(folder: Path) -> Path:
    """Write a test CA and, signed by it, a certificate for ``example.com``
    and ``*.example.com`` as ``fullchain.pem`` and ``privkey.pem`` (the names
    certbot uses). Return the CA's file, for clients to trust."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    leaf, csr = folder / "cert.pem", folder / "cert.csr"
    ext = folder / "leaf.ext"
    ext.write_text(
        "subjectAltName = DNS:example.com, DNS:*.example.com\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_subject = ["-subj", "/CN=flask_dispatch test CA"]
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE"]
    ca_ext += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    leaf_subject, leaf_key = ["-subj", "/CN=example.com"], folder / "privkey.pem"
    signed_by_ca: list[str | Path] = [
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-extfile",
        ext,
    ]
    commands: list[list[str | Path]] = [
        [OPENSSL, "req", "-x509", *key, *ca_subject, *ca_ext, "-keyout", ca_key, "-out", ca],
        [OPENSSL, "req", "-new", *key, *leaf_subject, "-keyout", leaf_key, "-out", csr],
        [OPENSSL, "x509", "-req", "-in", csr, *signed_by_ca, "-out", leaf],
    ]
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    (folder / "fullchain.pem").write_text(leaf.read_text() + ca.read_text())
    return ca


class Nginx:
    """A running nginx; its error log is ``folder / "error.log"``."""

    def __init__(self, process: subprocess.Popen[bytes], folder: Path) -> None:
        self.process = process
        self.folder = folder

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def nginx(
    folder: Path, site: str, ports: t.Iterable[int], timeout: float = 15.0
) -> t.Iterator[Nginx]:
    """Start nginx in the foreground with ``site`` as its only site and its
    files in ``folder``; wait until it accepts connections on ``ports``; stop
    it on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.conf").write_text(site)
    # Run as root, nginx would hand requests to workers running as "nobody",
    # who may not enter the test's folder; the folder is the test's own.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(_MAIN.format(user=user, dir=folder))
    command = [
        NGINX,
        "-p",
        str(folder),
        "-c",
        str(folder / "nginx.conf"),
        "-e",
        str(folder / "error.log"),
    ]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    running = Nginx(process, folder)
    try:
        deadline = time.monotonic() + timeout
        waiting = list(ports)
        while waiting:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{running.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=1).close()
            except OSError:
                time.sleep(0.05)
            else:
                waiting.pop(0)
        yield running
    finally:
        stop(process)  # SIGTERM: nginx's fast shutdown
