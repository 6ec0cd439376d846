"""Store passwords, unit by unit: the one redaction of a URL, the password file read as libpq reads
it, and where a URL without a password takes one from (the end-to-end check is test_secrets.py)."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from sluice.metadata import MetadataStoreError
from sluice.metadata.connection import _connection_config
from sluice.metadata.credentials import (find_password, has_password, password_in_environment, pgpass_match,
                                         pgpass_password, redact_url, scrub, url_password, without_password)

ENV = ('SLUICE_METADATA_PASSWORD', 'PGPASSWORD', 'PGPASSFILE')


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('PGPASSFILE', str(tmp_path / 'no-such-pgpass'))
    return monkeypatch


@pytest.mark.parametrize('url, shown, written', [
    ('postgresql://user:secret@host:5432/db', 'postgresql://user:***@host:5432/db', 'postgresql://user@host:5432/db'),
    ('postgresql://u:s%40cr%2Ft@db.example/mlmd?sslmode=require&application_name=a:b@c',
     'postgresql://u:***@db.example/mlmd?sslmode=require&application_name=a:b@c',
     'postgresql://u@db.example/mlmd?sslmode=require&application_name=a:b@c'),
    ('postgresql://u:p@ss:w@rd@h:1/db', 'postgresql://u:***@h:1/db', 'postgresql://u@h:1/db'),  # '@' and ':' unencoded
    ('mysql://bob:pw@mysql.example:3306/meta#frag', 'mysql://bob:***@mysql.example:3306/meta#frag',
     'mysql://bob@mysql.example:3306/meta#frag'),
    ('postgres+psycopg://u:pw@[::1]:5432/db', 'postgres+psycopg://u:***@[::1]:5432/db', 'postgres+psycopg://u@[::1]:5432/db'),
])
def test_a_password_is_masked_for_showing_and_left_out_for_writing(url, shown, written):
    assert redact_url(url) == shown
    assert without_password(url) == written
    assert has_password(url) and not has_password(shown) and not has_password(written)
    parts, masked = urlsplit(url), urlsplit(shown)
    assert url_password(url) and url_password(url) not in shown
    # Everything but the password is as urllib reads it in the original.
    assert (masked.scheme, masked.username, masked.hostname, masked.port, masked.path, masked.query, masked.fragment) \
        == (parts.scheme, parts.username, parts.hostname, parts.port, parts.path, parts.query, parts.fragment)
    assert masked.password == '***' and urlsplit(written).password is None


@pytest.mark.parametrize('url', [
    'postgresql://user@host:5432/db', 'postgresql://host/db', 'postgresql://u:@host/db', 'postgresql://u:***@h/db',
    'postgresql://h/db?options=a:b@c', 'sqlite:///rel/m.db', 'sqlite:////tmp/a:b@c/m.db', 'm.db', ':memory:',
    'memory://', '', None,
])
def test_a_url_without_a_password_is_left_alone(url):
    assert redact_url(url) == url
    assert not has_password(url)
    if url != 'postgresql://u:***@h/db':
        assert without_password(url) == url


def test_scrub_masks_each_secret():
    assert scrub('login as u with s3cret failed (s3cret)', 's3cret', '') == 'login as u with *** failed (***)'


PGPASS = r'''# host:port:database:user:password
db.example:5432:mlmd:alice:first
db.example:5432:*:alice:second
*:*:*:bob:b\:ob\\pw:ignored field
db.example:5432:mlmd
weird\:host:5432:mlmd:carol:c
\*:5432:mlmd:dave:literal-star
*:*:*:dave:any-host
*:6543:*:*:port-6543
'''


@pytest.mark.parametrize('host, port, database, user, expected', [
    ('db.example', '5432', 'mlmd', 'alice', ('first', 2)),  # the first matching line wins
    ('db.example', '5432', 'other', 'alice', ('second', 3)),
    ('anywhere', '1', 'x', 'bob', ('b:ob\\pw', 4)),  # \: and \\ escaped; a field past the password ignored
    ('weird:host', '5432', 'mlmd', 'carol', ('c', 6)),
    ('*', '5432', 'mlmd', 'dave', ('literal-star', 7)),  # \* is a literal star
    ('db.example', '5432', 'mlmd', 'dave', ('any-host', 8)),
    ('h', '6543', 'd', 'eve', ('port-6543', 9)),
    ('h', '5432', 'd', 'eve', None),
])
def test_password_file_lines_match_as_libpq_matches_them(host, port, database, user, expected):
    assert pgpass_match(PGPASS, host, port, database, user) == expected
    assert pgpass_match(PGPASS.replace('\n', '\r\n'), host, port, database, user) == expected


def test_the_password_file_is_ignored_unless_only_its_owner_may_read_it(tmp_path, capsys):
    path = tmp_path / 'pgpass'
    path.write_text('*:*:*:*:hunter2\n')
    for mode in (0o600, 0o400, 0o700):  # libpq's rule: no group or world bit
        path.chmod(mode)
        assert pgpass_password('h', '5432', 'd', 'u', str(path)) == ('hunter2', f'{path} line 1')
    path.chmod(0o640)
    assert pgpass_password('h', '5432', 'd', 'u', str(path)) is None
    err = capsys.readouterr().err
    assert f'password file {path} has group or world access (mode 0640)' in err and 'ignored' in err
    assert 'hunter2' not in err
    assert pgpass_password('h', '5432', 'd', 'u', str(tmp_path)) is None  # a directory: not a plain file
    assert pgpass_password('h', '5432', 'd', 'u', str(tmp_path / 'missing')) is None


def test_where_a_url_without_a_password_takes_one_from(clean_env, tmp_path):
    pgpass = tmp_path / 'pgpass'
    pgpass.write_text('h:5432:d:u:from-file\n')
    pgpass.chmod(0o600)
    assert find_password('postgresql', 'h', '5432', 'd', 'u')[0] == ''
    clean_env.setenv('PGPASSFILE', str(pgpass))
    assert find_password('postgresql', 'h', '5432', 'd', 'u') == ('from-file', f'{pgpass} line 1')
    clean_env.setenv('PGPASSWORD', 'from-pg')
    assert find_password('postgresql', 'h', '5432', 'd', 'u') == ('from-pg', '$PGPASSWORD')
    clean_env.setenv('SLUICE_METADATA_PASSWORD', 'from-sluice')
    assert find_password('postgresql', 'h', '5432', 'd', 'u') == ('from-sluice', '$SLUICE_METADATA_PASSWORD')
    clean_env.delenv('SLUICE_METADATA_PASSWORD')
    assert find_password('mysql', 'h', '5432', 'd', 'u')[0] == ''  # PGPASSWORD and .pgpass are PostgreSQL's


def test_the_connection_config_takes_the_password_from_the_url_else_the_environment(clean_env):
    config, url = _connection_config('postgresql://alice:s%40cret@db:6543/mlmd')
    assert config.postgresql.password == 's@cret' and url == 'postgresql://alice:s%40cret@db:6543/mlmd'
    config, _ = _connection_config('postgresql://alice@db:6543/mlmd')
    assert config.postgresql.password == ''
    clean_env.setenv('SLUICE_METADATA_PASSWORD', 'env-secret')
    for url in ('postgresql://alice@db:6543/mlmd', 'postgresql://alice:***@db:6543/mlmd'):  # *** is none
        config, _ = _connection_config(url)
        assert config.postgresql.password == 'env-secret'
    config, _ = _connection_config('mysql://bob@db/meta')
    assert config.mysql.password == 'env-secret'
    config, _ = _connection_config('postgresql://alice:given@db/mlmd')
    assert config.postgresql.password == 'given'


def test_a_url_that_cannot_be_read_says_so_without_the_password():
    with pytest.raises(MetadataStoreError) as e:  # a '/' in the password, not percent-encoded
        _connection_config('postgresql://alice:zq9/xk7@db:5432/mlmd')
    assert 'zq9' not in str(e.value) and 'xk7' not in str(e.value)
    assert 'percent-encode' in str(e.value).lower() and 'SLUICE_METADATA_PASSWORD' in str(e.value)
    with pytest.raises(MetadataStoreError) as e:
        _connection_config('redis://u:topsecret@x')
    assert 'topsecret' not in str(e.value) and "redis://u:***@x" in str(e.value)


def test_processes_started_meanwhile_get_the_urls_password_through_the_environment(clean_env):
    with password_in_environment('postgresql://u:s%40c@h/db'):  # e.g. a Beam worker of the DAG runner
        assert os.environ['SLUICE_METADATA_PASSWORD'] == 's@c'
    assert 'SLUICE_METADATA_PASSWORD' not in os.environ
    clean_env.setenv('SLUICE_METADATA_PASSWORD', 'before')
    for url, inside in (('postgresql://u@h/db', 'before'), ('postgresql://u:***@h/db', 'before'),
                        ('postgresql://u:x@h/db', 'x')):
        with password_in_environment(url):
            assert os.environ['SLUICE_METADATA_PASSWORD'] == inside
        assert os.environ['SLUICE_METADATA_PASSWORD'] == 'before'


def test_the_store_shows_its_url_masked(tmp_path):
    from sluice.metadata import MetadataStore
    url = f'sqlite:///{tmp_path}/m.db'
    store = MetadataStore(url)
    assert store.url == store.connect_url == url
    assert os.path.isfile(tmp_path / 'm.db')
