"""Start a private, throw-away Prosody server for the integration tests.

Everything lives under one work directory: a generated config (never Debian's
``/etc/prosody``), a test CA plus a server certificate for ``localhost``, the data
directory with pre-written accounts, the pid file and the logs. Prosody listens on
free loopback ports only and is stopped (SIGTERM, then SIGKILL) when the context
manager exits.

The module is synchronous on purpose: the session fixture that uses it runs
outside any Trio event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import signal
import socket
import subprocess
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProsodyInstance", "run_prosody", "write_account"]

DOMAIN = "localhost"
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0
SCRAM_ITERATIONS = 10_000  # Prosody's default_iteration_count
_HASHES = {"SHA-1": "sha1", "SHA-256": "sha256"}
_FORBIDDEN_IN_USER = set("\"&'/:<>@")


@dataclass(frozen=True)
class ProsodyInstance:
    """Where a running test server can be reached."""

    domain: str
    host: str
    c2s_port: int
    c2s_direct_tls_port: int
    http_port: int
    https_port: int
    cafile: Path
    data_dir: Path
    users: dict[str, str]
    config_file: Path
    log_file: Path
    pid: int

    @property
    def websocket_url(self) -> str:
        """Plain ``ws://`` endpoint (Prosody is told to consider it secure)."""
        return f"ws://{self.host}:{self.http_port}/xmpp-websocket"

    @property
    def secure_websocket_url(self) -> str:
        return f"wss://{self.host}:{self.https_port}/xmpp-websocket"

    @property
    def bosh_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/http-bind"

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if name == "prosody":
            raise RuntimeError(
                "The integration tests need the Prosody XMPP server, but `prosody` is not on "
                "PATH. Run `make prosody` to install it (apt packages prosody, prosody-modules)."
            )
        raise RuntimeError(f"The integration tests need `{name}`, which is not on PATH.")
    return path


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (all held open while choosing)."""
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def _run(argv: list[str], cwd: Path) -> None:
    result = subprocess.run(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")


def _make_certificates(workdir: Path, domain: str) -> tuple[Path, Path, Path]:
    """Create a test CA and a server certificate signed by it.

    Returns ``(cafile, certfile, keyfile)``. The server pair is ``certs/<domain>.crt`` and
    ``certs/<domain>.key``: the names Prosody's ``certificates = "certs"`` lookup expects.
    The CA lives in a separate directory so that Prosody's certificate index never sees it.
    """
    openssl = _require_tool("openssl")
    ca_dir = workdir / "ca"
    certs_dir = workdir / "certs"
    ca_dir.mkdir(parents=True, exist_ok=True)
    certs_dir.mkdir(parents=True, exist_ok=True)
    cafile, cakey = ca_dir / "ca.crt", ca_dir / "ca.key"
    certfile, keyfile = certs_dir / f"{domain}.crt", certs_dir / f"{domain}.key"
    csr, extfile = ca_dir / f"{domain}.csr", ca_dir / f"{domain}.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    _run(
        [openssl, "req", "-x509", *ec, "-keyout", str(cakey), "-out", str(cafile),
         "-days", "825", "-subj", "/CN=xmppkit test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        workdir,
    )  # fmt: skip
    _run(
        [openssl, "req", "-new", *ec, "-keyout", str(keyfile), "-out", str(csr),
         "-subj", f"/CN={domain}"],
        workdir,
    )  # fmt: skip
    extfile.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid:always\n"
        f"subjectAltName = DNS:{domain}, DNS:*.{domain}, IP:{HOST}\n",
        encoding="ascii",
    )
    _run(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(cafile), "-CAkey", str(cakey),
         "-CAcreateserial", "-days", "825", "-sha256", "-extfile", str(extfile),
         "-out", str(certfile)],
        workdir,
    )  # fmt: skip
    return cafile, certfile, keyfile


def _path_encode(part: str) -> str:
    """Prosody's datamanager encoding: every byte that is not ASCII alphanumeric -> %xx."""
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02x}"
        for b in part.encode("utf-8")
    )


def _lua_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_account(
    data_dir: Path, domain: str, user: str, password: str, password_hash: str = "SHA-1"
) -> Path:
    """Write an ``internal_hashed`` account file exactly as ``prosodyctl register`` does.

    ``<data_dir>/<enc(domain)>/accounts/<enc(user)>.dat`` holding a Lua table with
    ``stored_key``/``server_key`` (hex), ``salt`` (a UUID string, used verbatim as the
    PBKDF2 salt) and ``iteration_count``. Usernames must already be in their nodeprep'd
    form (lowercase, none of ``"&'/:<>@`` or spaces); passwords are NFKC-normalised,
    which matches SASLprep for ordinary passwords.
    """
    if (
        not user
        or user != user.lower()
        or any(c in _FORBIDDEN_IN_USER or c.isspace() for c in user)
    ):
        raise ValueError(f"not a plain, already-nodeprep'd username: {user!r}")
    try:
        algo = _HASHES[password_hash]
    except KeyError:
        raise ValueError(f"unsupported password_hash {password_hash!r}") from None
    salt = str(uuid.uuid4())
    secret = unicodedata.normalize("NFKC", password).encode("utf-8")
    salted = hashlib.pbkdf2_hmac(algo, secret, salt.encode("ascii"), SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored_key = hashlib.new(algo, client_key).hexdigest()
    server_key = hmac.new(salted, b"Server Key", algo).hexdigest()

    accounts = data_dir / _path_encode(domain) / "accounts"
    accounts.mkdir(parents=True, exist_ok=True)
    path = accounts / f"{_path_encode(user)}.dat"
    path.write_text(
        "return {\n"
        f'\t["stored_key"] = "{stored_key}";\n'
        f'\t["server_key"] = "{server_key}";\n'
        f'\t["iteration_count"] = {SCRAM_ITERATIONS};\n'
        f'\t["salt"] = "{salt}";\n'
        "};\n",
        encoding="utf-8",
    )
    return path


_MODULES = (
    "roster", "saslauth", "tls", "disco", "carbons", "pep", "ping", "smacks", "websocket",
    "bosh", "csi_simple", "blocklist", "time", "version", "vcard4", "mam",
)  # fmt: skip


def _config(
    *,
    workdir: Path,
    data_dir: Path,
    log_file: Path,
    certfile: Path,
    keyfile: Path,
    ports: tuple[int, int, int, int],
    password_hash: str,
    extra_config: str,
) -> str:
    c2s, c2s_tls, http, https = ports
    ssl = f"{{ certificate = {_lua_str(str(certfile))}; key = {_lua_str(str(keyfile))} }}"
    modules = ", ".join(_lua_str(m) for m in _MODULES)
    return f"""\
-- Generated by tests/integration/_prosody.py; not Debian's /etc/prosody config.
run_as_root = true
data_path = {_lua_str(str(data_dir))}
pidfile = {_lua_str(str(workdir / "prosody.pid"))}
log = {{ info = {_lua_str(str(log_file))} }}
certificates = {_lua_str(str(certfile.parent))}

interfaces = {{ {_lua_str(HOST)} }}
http_interfaces = {{ {_lua_str(HOST)} }}
https_interfaces = {{ {_lua_str(HOST)} }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ {c2s_tls} }}
http_ports = {{ {http} }}
https_ports = {{ {https} }}
s2s_ports = {{ }}
c2s_direct_tls_ssl = {ssl}
https_ssl = {ssl}
http_default_host = {_lua_str(DOMAIN)}

modules_enabled = {{ {modules} }}
modules_disabled = {{ "s2s", "s2s_auth_certs" }}

authentication = "internal_hashed"
password_hash = {_lua_str(password_hash)}
c2s_require_encryption = true
allow_registration = false
consider_websocket_secure = true
consider_bosh_secure = true
default_archive_policy = false
smacks_hibernation_time = 60
-- Long fault runs flood a hibernating receiver; the default (500) ends its session.
smacks_max_queue_size = 10000

-- extra_config (global section)
{extra_config}

VirtualHost {_lua_str(DOMAIN)}
ssl = {ssl}
"""


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers_stream(port: int, timeout: float) -> bool:
    """True once the c2s port answers a stream header with stream features.

    Prosody binds its ports while still loading modules, before its event loop runs
    (and before it writes the pid file), so an accepted TCP connection alone is not
    "ready".
    """
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' version='1.0'>"
    )
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(header.encode())
            data = b""
            while b"<stream:features" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            sock.sendall(b"</stream:stream>")
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def run_prosody(
    workdir: Path,
    users: dict[str, str],
    *,
    password_hash: str = "SHA-1",
    extra_config: str = "",
) -> Iterator[ProsodyInstance]:
    """Run a fresh Prosody under ``workdir`` with ``users`` registered; stop it on exit.

    ``extra_config`` is Lua appended to the global section (before the VirtualHost);
    it may also start further ``Component``/``VirtualHost`` sections.
    """
    prosody = _require_tool("prosody")
    if password_hash not in _HASHES:
        raise ValueError(f"unsupported password_hash {password_hash!r}")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    log_file = workdir / "prosody.log"
    config_file = workdir / "prosody.cfg.lua"

    cafile, certfile, keyfile = _make_certificates(workdir, DOMAIN)
    for user, password in users.items():
        write_account(data_dir, DOMAIN, user, password, password_hash)
    c2s, c2s_tls, http, https = _free_ports(4)
    config_file.write_text(
        _config(
            workdir=workdir,
            data_dir=data_dir,
            log_file=log_file,
            certfile=certfile,
            keyfile=keyfile,
            ports=(c2s, c2s_tls, http, https),
            password_hash=password_hash,
            extra_config=extra_config,
        ),
        encoding="utf-8",
    )

    with open(workdir / "prosody.console", "wb") as console:
        proc = subprocess.Popen(
            [prosody, "--config", str(config_file), "-F"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal is handled by us, not by it
        )
        try:
            instance = ProsodyInstance(
                domain=DOMAIN,
                host=HOST,
                c2s_port=c2s,
                c2s_direct_tls_port=c2s_tls,
                http_port=http,
                https_port=https,
                cafile=cafile,
                data_dir=data_dir,
                users=dict(users),
                config_file=config_file,
                log_file=log_file,
                pid=proc.pid,
            )
            deadline = time.monotonic() + STARTUP_TIMEOUT
            pending = [c2s, c2s_tls, http, https]
            while pending:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"prosody exited with status {proc.returncode} during startup; "
                        f"log tail:\n{_tail(log_file, 40)}\n"
                        f"console:\n{_tail(workdir / 'prosody.console', 20)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"prosody did not accept connections on {HOST}:{pending} within "
                        f"{STARTUP_TIMEOUT:.0f} s; log tail:\n{_tail(log_file, 40)}"
                    )
                if _accepts(pending[0]):
                    pending.pop(0)
                else:
                    time.sleep(0.05)
            while not _answers_stream(c2s, min(2.0, max(0.1, deadline - time.monotonic()))):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"prosody (status {proc.poll()}) never answered an XMPP stream on "
                        f"{HOST}:{c2s}; log tail:\n{_tail(log_file, 40)}"
                    )
                time.sleep(0.05)
            yield instance
        finally:
            _stop(proc)
