"""Running the app with uvicorn: ``genlab serve``."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
from pathlib import Path

import click


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(runs_dir: Path, *, host: str = "127.0.0.1", port: int = 8765, data_roots: list[Path] | None = None) -> None:
    """Serve the app until SIGINT/SIGTERM; print ``genlab serve: http://HOST:PORT/`` once it
    accepts connections (``port`` 0: a free one)."""
    import uvicorn

    from .app import LOOPBACK_HOSTS, create_app

    if not is_loopback(host):
        click.echo(
            f"genlab serve: warning: binding {host}: anyone who can reach this machine can use the app (train, read runs); use 127.0.0.1 unless you mean it",
            err=True,
        )
    app = create_app(
        runs_dir, data_roots=data_roots, allowed_hosts=[*LOOPBACK_HOSTS, host] if is_loopback(host) else ["*"]
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        from ..errors import GenlabError

        raise GenlabError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            click.echo(f"genlab serve: http://{shown}:{bound}/")
            sys.stdout.flush()

        @contextlib.contextmanager
        def capture_signals(self):
            # SIGINT/SIGTERM end the server gracefully (a running training job gets SIGINT and
            # keeps its checkpoint); unlike uvicorn's default, the signal is not re-raised
            # afterwards, so 'genlab serve' exits 0 instead of printing 'aborted'
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    Server(config).run(sockets=[sock])
