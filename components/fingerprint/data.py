"""The fingerprints of what a node reads: an input artifact's (derived from the key of the execution
that made it and its output key) and, for what a driver adds (``external``), files by content."""
from __future__ import annotations

import hashlib
import os
from typing import Iterable

from sluice.metadata import storage
from sluice.components.fingerprint.key import sha256


def output_fingerprint(key: str, output_key: str) -> str:
    return sha256(key, output_key)


def files_fingerprint(paths: Iterable[str], root: str | None = None) -> str:
    """A fingerprint of file contents, byte for byte (and their names relative to ``root``). Objects
    in an object store are not read: their ETag (a digest of the content the store computed on upload)
    and size stand for their bytes."""
    h = hashlib.sha256()
    for path in sorted(paths):
        if storage.is_remote(path):
            name = path[len(root.rstrip('/')) + 1:] if root and path.startswith(root) else storage.name(path)
            st = storage.stat(path)
            h.update(f'{name}\0etag:{st["version"]}:{st["size"]}\0'.encode())
            continue
        name = os.path.relpath(path, root) if root else os.path.basename(path)
        h.update(name.encode() + b'\0')
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        h.update(b'\0')
    return h.hexdigest()
