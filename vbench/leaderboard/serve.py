"""``vbench leaderboard --serve``: the site on http://127.0.0.1:PORT/ (Python's http.server) until Ctrl-C."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path
from typing import Callable

from vbench.errors import VbenchError


def open_server(directory: Path, port: int) -> http.server.ThreadingHTTPServer:
    """A server of ``directory`` bound to 127.0.0.1 only (port 0: any free one); a taken port is one error."""
    if not 0 <= port <= 65535:
        raise VbenchError(f"--port {port} is not a port; give 1-65535 (or 0 for any free one)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise VbenchError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}; give a free --port "
                          "(0 picks one)") from None


def serve_site(directory: Path, port: int, announce: Callable[[str], None]) -> None:
    """Serve ``directory`` until Ctrl-C; ``announce(url)`` once the server listens."""
    server = open_server(directory, port)
    try:
        announce(f"http://127.0.0.1:{server.server_address[1]}/")
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
