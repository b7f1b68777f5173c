"""Start a private Dovecot IMAP server for tests: its own config, one user, one Maildir.

Reusable by any test package::

    from tests.dovecot import Dovecot
    with Dovecot() as imap:                 # or Dovecot(maildir=path)
        MailServer(imap.maildir).start()    # the sandbox delivers here …
        open_mailbox(imap.url)              # … and the flows read it over IMAP

The server listens on 127.0.0.1 on a free port with plaintext login allowed (no TLS: it never
leaves the loopback interface), keeps its runtime state in a temporary directory, and serves
``maildir`` as the user's INBOX (Maildir++ folders such as ``.Claimed`` beside it). Works with
Dovecot 2.3 (Debian 12) and 2.4 (Debian 13), as root or as an ordinary user.

Dovecot refuses mail access as root, so when the tests run as root the Maildir is handed to
the unprivileged ``mail`` account (``chown -R``) and must sit where that account can reach
it: by default it is created inside the server's own world-traversable temp directory.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

__all__ = ["DOVECOT", "Dovecot", "dovecot_version"]

DOVECOT = os.environ.get("DOVECOT_BINARY", "/usr/sbin/dovecot")
# Accounts tried, in order, to own the mail when running as root (Debian base has ``mail``).
_MAIL_ACCOUNTS = ("mail", "dovecot", "nobody")


def dovecot_version(binary: str = DOVECOT) -> tuple[int, int]:
    """``(2, 3)`` for Dovecot 2.3.x: the configuration syntax changed in 2.4."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    found = re.match(r"(\d+)\.(\d+)", out.stdout.strip())
    if not found:
        raise RuntimeError(f"unrecognised dovecot version: {out.stdout!r}")
    return int(found.group(1)), int(found.group(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc: Dovecot runs on Linux here)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid …": comm may hold spaces, so split after its ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for parent, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)


class Dovecot:
    """One Dovecot instance serving ``maildir`` to ``user``/``password`` over plain IMAP."""

    def __init__(
        self,
        maildir: Path | None = None,
        *,
        user: str = "constancias",
        password: str = "s3creta",  # noqa: S107 - a throwaway test account
        host: str = "127.0.0.1",
        port: int = 0,
        binary: str = DOVECOT,
        special_use: dict[str, str] | None = None,
    ) -> None:
        """``special_use``: folder name → RFC 6154 attribute (``{"Indeseados": "\\Junk"}``),
        which LIST gives that folder once it exists."""
        self._given_maildir = Path(maildir).resolve() if maildir is not None else None
        self.special_use = dict(special_use or {})
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.binary = binary
        self._root: Path | None = None
        self._pid: int | None = None

    # --- what clients use -----------------------------------------------------------------
    @property
    def maildir(self) -> Path:
        """The INBOX Maildir (``cur/ new/ tmp/``); deliver test mail into it."""
        if self._given_maildir is not None:
            return self._given_maildir
        assert self._root is not None, "not started"
        return self._root / "Maildir"

    @property
    def url(self) -> str:
        """``imap://user:pass@127.0.0.1:port/INBOX`` (credentials URL-encoded)."""
        return (
            f"imap://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/INBOX"
        )

    @property
    def config_path(self) -> Path:
        assert self._root is not None, "not started"
        return self._root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        """Dovecot's own log (kept until ``stop``): read it when a test fails oddly."""
        assert self._root is not None, "not started"
        return self._root / "dovecot.log"

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 15.0) -> None:
        """Write the config, start the master process and wait until IMAP greets."""
        # Not under pytest's tmp: that tree is mode 0700, and Dovecot's unprivileged processes
        # must reach base_dir (and the Maildir); a short path also keeps unix socket names
        # under their 108-byte limit.
        self._root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self._root.chmod(0o755)
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = _free_port()
        self.config_path.write_text(self._config())
        # A hashed password: passwd-file cannot escape a ":" written in plain text.
        digest = base64.b64encode(hashlib.sha256(self.password.encode()).digest()).decode()
        (self._root / "passwd").write_text(f"{self.user}:{{SHA256.b64}}{digest}::::::\n")
        # The master daemonizes and its children inherit our stdout/stderr: a captured pipe
        # would never reach EOF, so the launcher's output goes to a file instead.
        out_path = self._root / "start.out"
        with out_path.open("wb") as out:
            started = subprocess.run(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=False,
            )
        if started.returncode != 0:
            output = out_path.read_text(errors="replace")
            self.stop()
            raise RuntimeError(f"dovecot failed to start: {output}")
        deadline = time.monotonic() + timeout_s
        pid_file = self._root / "run" / "master.pid"
        while True:
            if self._pid is None and pid_file.exists():
                # Written by the daemonized master shortly after the launcher returns.
                words = pid_file.read_text().split()
                self._pid = int(words[0]) if words else None
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"* OK") and self._pid is not None:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                log = self.log_path.read_text() if self.log_path.exists() else ""
                self.stop()
                raise RuntimeError(f"dovecot did not start listening:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the master (and so every child) and remove the runtime directory."""
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                # The master lingers ~2 s after its children have exited; once they are
                # gone there is nothing left for it to clean up, so it is not waited for.
                while time.monotonic() < deadline and _children(self._pid):
                    time.sleep(0.02)
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._pid = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- configuration --------------------------------------------------------------------
    def _identities(self) -> tuple[str, str, int, int]:
        """(internal user, login user, mail uid, mail gid), preparing the Maildir's owner.

        As an ordinary user everything runs as that user. As root, Dovecot's unprivileged
        accounts run its helpers and login processes, and mail is accessed as the Maildir's
        owner, which must not be root (Dovecot refuses): a root-owned Maildir is given to
        the ``mail`` account. ``fixtures.mail.MailServer`` delivers as the Maildir's owner.
        """
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return me.pw_name, me.pw_name, me.pw_uid, os.getegid()
        internal = "dovecot" if _account("dovecot") else "root"
        login = "dovenull" if _account("dovenull") else internal
        st = self.maildir.stat()
        uid, gid = st.st_uid, st.st_gid
        if uid == 0:
            owner = next((a for a in map(_account, _MAIL_ACCOUNTS) if a and a.pw_uid), None)
            if owner is None:
                raise RuntimeError("no unprivileged account to own the test Maildir")
            uid, gid = owner.pw_uid, owner.pw_gid
            _chown_tree(self.maildir, uid, gid)
        self._check_reachable(uid, gid)
        return internal, login, uid, gid

    def _check_reachable(self, uid: int, gid: int) -> None:
        # Every parent must be searchable by the mail account, or Dovecot fails at SELECT
        # with a vague "internal error"; say it plainly instead.
        groups = {gid} | {g.gr_gid for g in grp.getgrall() if pwd.getpwuid(uid).pw_name in g.gr_mem}
        for parent in self.maildir.parents:
            st = parent.stat()
            mode = st.st_mode
            ok = (
                (st.st_uid == uid and mode & 0o100)
                or (st.st_gid in groups and mode & 0o010)
                or mode & 0o001
            )
            if not ok:
                raise RuntimeError(
                    f"uid {uid} cannot reach {self.maildir}: {parent} is not searchable; "
                    "use Dovecot() without a maildir, or a path under a world-readable folder"
                )

    def _namespace(self) -> str:
        """The INBOX namespace with the special-use folders (the same syntax in 2.3 and 2.4);
        none when there are none (Dovecot's implicit namespace)."""
        if not self.special_use:
            return ""
        boxes = "".join(f'  mailbox "{name}" {{\n    special_use = {flag}\n  }}\n'
                        for name, flag in self.special_use.items())
        return f"namespace inbox {{\n  inbox = yes\n{boxes}}}\n"

    def _config(self) -> str:
        internal, login, uid, gid = self._identities()
        root = self._root
        assert root is not None
        home = root / "home"
        for private in (home, root / "index", root / "control"):
            private.mkdir()
            os.chown(private, uid, gid)
        version = dovecot_version(self.binary)
        # Without root there is no chroot and no privilege separation to set up.
        no_chroot = (
            "service imap-login {\n  chroot =\n}\nservice anvil {\n  chroot =\n}\n"
            f"default_internal_group = {grp.getgrgid(os.getegid()).gr_name}\n"
            if os.geteuid() != 0
            else ""
        )
        common = f"""\
base_dir = {root}/run
state_dir = {root}/state
instance_name = dovecot-test-{self.port}
protocols = imap
listen = {self.host}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
ssl = no
auth_mechanisms = plain login
# Tests try wrong passwords on purpose: answer at once.
auth_failure_delay = 0
# Race tests open many sessions for one user from one address (the default allows 10).
mail_max_userip_connections = 200
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{no_chroot}{self._namespace()}"""
        # Indexes and the UID list live outside the Maildir, so the sandbox's folder holds
        # nothing but mail.
        if version >= (2, 4):
            return f"""\
dovecot_config_version = {version[0]}.{version[1]}.0
dovecot_storage_version = {version[0]}.{version[1]}.0
{common}
auth_allow_cleartext = yes
mail_driver = maildir
mail_path = {self.maildir}
mail_index_path = {root}/index
mail_control_path = {root}/control
passdb passwd-file {{
  passwd_file_path = {root}/passwd
}}
userdb static {{
  fields {{
    uid = {uid}
    gid = {gid}
    home = {home}
  }}
}}
"""
        return f"""\
{common}
disable_plaintext_auth = no
mail_location = maildir:{self.maildir}:INDEX={root}/index:CONTROL={root}/control
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}
}}
"""
