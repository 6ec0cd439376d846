"""Store passwords: kept out of everything Sluice prints, logs, records and exports, and found, when a
store URL carries none, where PostgreSQL's own tools look.

    >>> redact_url('postgresql://alice:s3cret@db:5432/mlmd?sslmode=require')
    'postgresql://alice:***@db:5432/mlmd?sslmode=require'
    >>> without_password('postgresql://alice:s3cret@db:5432/mlmd')
    'postgresql://alice@db:5432/mlmd'

``redact_url`` is the URL as Sluice shows it (its output, run logs, reports, error messages);
``without_password`` is the URL as Sluice writes it for other processes to use (exported Airflow DAGs
and KFP specs, the pipeline stored with a run): they find the password in their environment.

A PostgreSQL or MySQL URL without a password (or with ``***``, as Sluice prints it) takes one from
``$SLUICE_METADATA_PASSWORD``; for PostgreSQL, else from ``$PGPASSWORD``, else from the password file
(``$PGPASSFILE``, else ``~/.pgpass``), as libpq reads it: lines ``host:port:database:user:password``,
``*`` matching anything in the first four fields, ``\\`` escaping ``:`` and ``\\``, lines starting with
``#`` ignored, the first matching line winning, and the whole file ignored (with a warning) unless it
is a plain file that neither group nor others may access (``chmod 0600``).
"""
from __future__ import annotations

import contextlib
import getpass
import os
import stat
import sys
from typing import Iterator
from urllib.parse import unquote

MASK = '***'
PASSWORD_ENV = 'SLUICE_METADATA_PASSWORD'
_warned: set[str] = set()


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password is in ``url`` (start, end), as ``urllib.parse`` reads it: between the first
    ``:`` and the last ``@`` of the part after ``scheme://`` up to the first ``/``, ``?`` or ``#``."""
    if not isinstance(url, str) or '://' not in url:
        return None
    start = url.index('://') + 3
    end = min([i for i in (url.find(c, start) for c in '/?#') if i >= 0], default=len(url))
    at = url.rfind('@', start, end)
    colon = url.find(':', start, at) if at >= 0 else -1
    if colon < 0 or colon + 1 == at:  # no password, or an empty one
        return None
    return colon + 1, at


def has_password(url: str | None) -> bool:
    """Whether ``url`` carries a password (``***``, Sluice's mask, is none)."""
    span = _password_span(url) if url else None
    return span is not None and unquote(url[span[0]:span[1]]) != MASK  # type: ignore[index]


def redact_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***``, otherwise unchanged; a URL without one as it is."""
    span = _password_span(url) if url else None
    return url if span is None else url[:span[0]] + MASK + url[span[1]:]  # type: ignore[index]


def without_password(url: str | None) -> str | None:
    """``url`` with its password (and the ``:`` before it) left out, otherwise unchanged."""
    span = _password_span(url) if url else None
    return url if span is None else url[:span[0] - 1] + url[span[1]:]  # type: ignore[index]


def scrub(text: str, *secrets: str) -> str:
    """``text`` (an error message, say) with each of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret and secret != MASK:
            text = text.replace(secret, MASK)
    return text


def url_password(url: str | None) -> str:
    """The password ``url`` carries, percent-decoded ('' for none, or for ``***``)."""
    if not has_password(url):
        return ''
    span = _password_span(url)
    assert span is not None and url is not None
    return unquote(url[span[0]:span[1]])


@contextlib.contextmanager
def password_in_environment(url: str | None) -> Iterator[None]:
    """While the block runs, ``$SLUICE_METADATA_PASSWORD`` holds the password of ``url`` (if it carries
    one), so that the processes started meanwhile can open the store from ``without_password(url)``."""
    password = url_password(url)
    if not password:
        yield
        return
    before = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = password
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = before


def pgpass_path() -> str:
    """The password file libpq reads: ``$PGPASSFILE``, else ``~/.pgpass`` (on Windows,
    ``%APPDATA%\\postgresql\\pgpass.conf``)."""
    if os.environ.get('PGPASSFILE'):
        return os.environ['PGPASSFILE']
    if os.name == 'nt':
        return os.path.join(os.environ.get('APPDATA', ''), 'postgresql', 'pgpass.conf')
    return os.path.join(os.path.expanduser('~'), '.pgpass')


def _fields(line: str) -> list[tuple[str, str]]:
    """A password-file line as (raw, unescaped) fields, split at unescaped colons."""
    fields, raw, plain, i = [], [], [], 0
    while i < len(line):
        c = line[i]
        if c == '\\' and i + 1 < len(line):
            raw.append(line[i:i + 2])
            plain.append(line[i + 1])
            i += 2
            continue
        if c == ':':
            fields.append((''.join(raw), ''.join(plain)))
            raw, plain = [], []
        else:
            raw.append(c)
            plain.append(c)
        i += 1
    fields.append((''.join(raw), ''.join(plain)))
    return fields


def pgpass_match(text: str, host: str, port: str, database: str, user: str) -> tuple[str, int] | None:
    """The password of the first line of a password file's ``text`` that matches, and its line number;
    None if no line matches. A line needs five fields; anything after the password's end (an unescaped
    ``:``) is ignored, as libpq does."""
    wanted = (host, str(port), database, user)
    for number, line in enumerate(text.split('\n'), start=1):
        line = line.rstrip('\r')
        if not line or line.startswith('#'):
            continue
        fields = _fields(line)
        if len(fields) < 5:
            continue
        if all(raw == '*' or plain == value for (raw, plain), value in zip(fields[:4], wanted)):
            return fields[4][1], number
    return None


def _warn(path: str, why: str) -> None:
    if path not in _warned:
        _warned.add(path)
        print(f'sluice: warning: password file {path} {why}; it is ignored (as libpq ignores it)', file=sys.stderr)


def pgpass_password(host: str, port: str, database: str, user: str,
                    path: str | None = None) -> tuple[str, str] | None:
    """(password, where) from the password file for this connection, or None. The file is ignored,
    with a warning, unless it is a plain file without group or world access (libpq's rule, not
    checked on Windows)."""
    path = path or pgpass_path()
    try:
        info = os.stat(path)
    except OSError:
        return None
    if os.name != 'nt':
        if not stat.S_ISREG(info.st_mode):
            _warn(path, 'is not a plain file')
            return None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            _warn(path, f'has group or world access (mode {stat.S_IMODE(info.st_mode):04o}); '
                        'permissions should be u=rw (0600) or less')
            return None
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            found = pgpass_match(f.read(), host, port, database, user)
    except OSError:
        return None
    if found is None or not found[0]:
        return None
    return found[0], f'{path} line {found[1]}'


def find_password(kind: str, host: str, port: str, database: str, user: str) -> tuple[str, str]:
    """(password, where it came from) for a server store whose URL carries no password, or ('', the
    places looked at) when none is found. ``kind``: 'postgresql' or 'mysql'."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV], f'${PASSWORD_ENV}'
    if kind != 'postgresql':
        return '', f'none (none in the URL or ${PASSWORD_ENV})'
    if os.environ.get('PGPASSWORD'):
        return os.environ['PGPASSWORD'], '$PGPASSWORD'
    found = pgpass_password(host, port, database, user or os_user())
    if found is not None:
        return found
    return '', f'none (none in the URL, ${PASSWORD_ENV}, $PGPASSWORD or {pgpass_path()})'


def os_user() -> str:
    """The user name libpq connects as when none is given."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name: nothing in a password file can match
        return ''
