"""The driver <-> node channel of the Dask executor: length-prefixed JSON frames on a TCP
connection that the node opens to the driver (why a direct stream: executors/dask.py).

    frame = 4-byte big-endian length | UTF-8 JSON object {"t": kind, ...}

    node -> driver   hello(token, node, host, pid) / bad_folder(host, why) / ready /
                     want(n) /
                     ended(rows) / states(rows) / died(...) / expired(...)
    driver -> node   spawn(rank, process) / batches(pairs) / kill(process, because) /
                     terminate(process) / close

JSON, never pickle: nothing read from the network is unpickled. On a TLS cluster the
socket is an ssl.SSLSocket (both ends verify, with the cluster's Dask certificates:
executors/dask.py); a FrameReader made with ``handshake=True`` first completes the server
side's handshake without blocking, and a failed one closes the reader like garbage does.
Reading never blocks (:class:`FrameReader` buffers partial frames); sending does,
briefly: frames are small (a node asks for at most 2W+4 attempts, and reports one drain
at a time), far below the socket buffers, so two peers both sending cannot fill each
other's buffers.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
from typing import Any

__all__ = ["FrameReader", "send_frame"]

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # a frame larger than this is not ours: the connection is dropped


def send_frame(sock: socket.socket, frame_type: str, /, **fields: Any) -> None:
    """Send one frame (blocking until the kernel took it)."""
    body = json.dumps({**fields, "t": frame_type}, separators=(",", ":")).encode()
    sock.sendall(HEADER.pack(len(body)) + body)


class FrameReader:
    """Frames from a non-blocking socket: ``read()`` returns the complete ones so far;
    ``closed`` once the peer closed (or reset) the connection or sent garbage."""

    def __init__(self, sock: socket.socket, handshake: bool = False) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self.closed = False
        self.why = ""
        self._handshaking = handshake  # an SSLSocket whose handshake is not done yet

    def read(self) -> list[dict[str, Any]]:
        if self.closed or (self._handshaking and not self._handshake()):
            return []
        tls = isinstance(self.sock, ssl.SSLSocket)
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    self._close("the connection was closed")
                    break
                self._buffer += chunk
                # A short read emptied the kernel's buffer; an SSLSocket returns one record
                # at a time and may hold decrypted bytes select() cannot see: read those.
                if len(chunk) < (1 << 20) and not (tls and self._pending()):
                    break
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError as exc:  # ssl.SSLError included (an SSLEOFError: the peer left)
            self._close(f"the connection failed: {exc}")
        frames = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                self._close(f"a frame of {length} bytes: not a parajob node")
                break
            if len(self._buffer) < HEADER.size + length:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            try:
                frame = json.loads(body)
            except ValueError:
                self._close("a frame that is not JSON: not a parajob node")
                break
            if isinstance(frame, dict):
                frames.append(frame)
        return frames

    def _pending(self) -> int:
        assert isinstance(self.sock, ssl.SSLSocket)
        return self.sock.pending()

    def _handshake(self) -> bool:
        """Advance a server-side TLS handshake; True once it is done."""
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            self.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError as exc:  # a peer without the cluster's certificate, a plain client
            self._close(f"the TLS handshake failed: {exc}")
            return False
        self._handshaking = False
        return True

    def _close(self, why: str) -> None:
        if not self.closed:
            self.closed, self.why = True, why
