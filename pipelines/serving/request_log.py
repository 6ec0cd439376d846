"""Request logs for drift: a sampled share of the requests, written as tf.Examples, one directory per
model version, in the files TFDV and ``tf.data.TFRecordDataset`` read.

    <log dir>/<version>/requests-<UTC time>-<host>-<pid>-<n>-<random>.tfrecord

Each example holds the raw features of one row as it arrived (a feature left out stays absent, as in
the examples ExampleGen writes from an empty CSV cell). Rows are written by a background thread into
a hidden ``.part`` file that is renamed into place every ``ROTATE_SECONDS`` (and when the server
stops), so a reader never sees a half-written file. Encoding is done here (tf.Example's protobuf
wire format and TFRecord's framing with CRC-32C), so the server needs no TensorFlow.
"""
from __future__ import annotations

import logging
import os
import queue
import random
import secrets
import socket
import struct
import threading
import time

import google_crc32c
import numpy as np

from sluice.components.onnx_export.serving import is_missing

logger = logging.getLogger('sluice.serve')

ROTATE_SECONDS = 10.0


# -- tf.Example and TFRecord, by hand ------------------------------------------------------------------
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_example(row: dict) -> bytes:
    """A tf.Example with one feature per (name, value): float -> float_list, int -> int64_list,
    str -> bytes_list (UTF-8)."""
    entries = b''
    for name in sorted(row):
        value = row[name]
        if isinstance(value, str):
            feature = _field(1, _field(1, value.encode('utf-8')))
        elif isinstance(value, (int, np.integer)):
            feature = _field(3, _field(1, _varint(int(value))))
        else:
            feature = _field(2, _field(1, struct.pack('<f', float(value))))
        entries += _field(1, _field(1, name.encode('utf-8')) + _field(2, feature))
    return _field(1, entries)


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack('<I', (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord(data: bytes) -> bytes:
    length = struct.pack('<Q', len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


# -- the log ---------------------------------------------------------------------------------------
class RequestLog:
    """Writes a ``rate`` share of the requests (0 < rate <= 1) under ``directory``."""

    def __init__(self, directory: str, rate: float, metrics=None):
        if not 0 < rate <= 1:
            raise ValueError(f'--log-requests takes a share of the requests between 0 and 1, got {rate}')
        self.directory, self.rate, self.metrics = os.path.abspath(directory), rate, metrics
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._files: dict[int, tuple[str, object]] = {}  # version -> (.part path, open file)
        self._count = 0
        self._thread = threading.Thread(target=self._write, name='sluice-request-log', daemon=True)
        self._thread.start()

    def sample(self) -> bool:
        return random.random() < self.rate

    def add(self, version: int, feed: dict[str, np.ndarray], missing: dict[str, object]) -> None:
        """Queues the rows of one request (the model's inputs); never blocks the request."""
        try:
            self._queue.put_nowait((version, feed, missing))
        except queue.Full:
            logger.warning('The request log is behind; a sampled request was not logged')

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _write(self) -> None:
        rotate_at = time.monotonic() + ROTATE_SECONDS
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, rotate_at - time.monotonic()))
            except queue.Empty:
                item = ()
            if item is None:
                self._rotate()
                return
            if item:
                try:
                    self._append(*item)
                except Exception as e:  # noqa: BLE001 - a row that cannot be written; the log goes on
                    logger.warning('A sampled request was not logged under %s: %s: %s', self.directory,
                                   type(e).__name__, e)
            if time.monotonic() >= rotate_at:
                self._rotate()
                rotate_at = time.monotonic() + ROTATE_SECONDS

    def _append(self, version: int, feed: dict[str, np.ndarray], missing: dict[str, object]) -> None:
        if version not in self._files:
            folder = os.path.join(self.directory, str(version))
            os.makedirs(folder, exist_ok=True)
            self._count += 1
            stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
            # host, process and a random part: replicas sharing a volume (pid 1 in containers) never collide
            name = f'{stamp}-{socket.gethostname()}-{os.getpid()}-{self._count}-{secrets.token_hex(3)}'
            path = os.path.join(folder, f'.requests-{name}.tfrecord.part')
            self._files[version] = (path, open(path, 'xb'))
        _, f = self._files[version]
        columns = {name: np.asarray(values).reshape(-1) for name, values in feed.items()}
        n = len(next(iter(columns.values())))
        records = []
        for i in range(n):
            row = {}
            for name, values in columns.items():
                value = values[i].item() if hasattr(values[i], 'item') else values[i]
                if is_missing(value, missing.get(name)):
                    continue
                row[name] = value
            records.append(tfrecord(encode_example(row)))
        f.write(b''.join(records))  # a request whose rows cannot all be encoded writes none of them
        if self.metrics is not None:
            self.metrics.logged.labels(self.metrics.model, str(version)).inc(n)

    def _rotate(self) -> None:
        for path, f in self._files.values():
            try:
                f.close()
                folder, name = os.path.split(path)
                os.rename(path, os.path.join(folder, name[1:-len('.part')]))
            except OSError as e:  # the directory removed by hand, say: the next rows start a new file
                logger.warning('The request log file %s could not be closed into place: %s', path, e)
        self._files.clear()
