"""A threaded loopback TCP proxy that tests can pause or cut, to make a service unreachable.

    with TcpProxy("127.0.0.1", 5432) as proxy:      # clients connect to proxy.port
        proxy.cut()       # every open connection is reset; new ones are refused (reset at once)
        proxy.pause()     # bytes stop flowing both ways and new connections wait, like a partition
        proxy.resume()    # back to normal: paused bytes flow again, new connections go through

Only for tests on one machine: it listens on 127.0.0.1 and forwards to one upstream address.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading

_POLL_SECONDS = 0.02
_CHUNK = 1 << 16


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL_SECONDS)
        self.port: int = self._listener.getsockname()[1]
        self._state = threading.Condition()
        self._mode = "open"  # "open" | "paused" | "cut"
        self._pairs: set[_Pair] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self.accepted = 0
        self.refused = 0

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def mode(self) -> str:
        with self._state:
            return self._mode

    @property
    def open_connections(self) -> int:
        with self._state:
            return len(self._pairs)

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until `resume()`."""
        with self._state:
            self._mode = "cut"
            pairs = list(self._pairs)
            self._state.notify_all()
        for pair in pairs:
            pair.close(reset=True)

    def pause(self) -> None:
        """Hold every byte and every new connection until `resume()` (a network partition)."""
        with self._state:
            self._mode = "paused"

    def resume(self) -> None:
        with self._state:
            self._mode = "open"
            self._state.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        self.resume()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()
        with self._state:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close(reset=True)
        for pair in pairs:
            pair.join()

    # -- inside ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _wait_open(self) -> bool:
        """Block while paused; False when cut or stopping."""
        with self._state:
            self._state.wait_for(lambda: self._mode != "paused" or self._stopping.is_set())
            return self._mode == "open" and not self._stopping.is_set()

    def _open(self, client: socket.socket) -> None:
        if not self._wait_open():
            self.refused += 1
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            self.refused += 1
            _reset(client)
            return
        pair = _Pair(self, client, upstream)
        with self._state:
            if self._mode == "cut":
                pair.close(reset=True)
                return
            self._pairs.add(pair)
            self.accepted += 1
        pair.start()

    def _forget(self, pair: _Pair) -> None:
        with self._state:
            self._pairs.discard(pair)


class _Pair:
    """One proxied connection: a thread copying bytes both ways while the proxy is open."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="tcp-proxy-pair", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def close(self, *, reset: bool = False) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()
        self.proxy._forget(self)

    def _pump(self) -> None:
        # Blocking sockets: select says when a recv will not block, and sendall never drops bytes.
        peers = {self.client: self.upstream, self.upstream: self.client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self._closed.is_set():
                if not self.proxy._wait_open():
                    self.close(reset=True)
                    return
                try:
                    ready = selector.select(_POLL_SECONDS)
                    for key, _ in ready:
                        if self.proxy.mode != "open":
                            break  # leave the bytes in the kernel until we resume
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(_CHUNK)
                        if not data:
                            self.close()
                            return
                        peers[source].sendall(data)
                except (OSError, ValueError):  # reset by a peer, or closed by cut()
                    self.close(reset=True)
                    return


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a dead server or a dropped route looks to the client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
