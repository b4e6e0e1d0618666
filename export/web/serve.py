#!/usr/bin/env python3
"""Serve the page, its LiteRT.js runtime and one model from 127.0.0.1 (the standard library only).

    cd export/web && npm ci
    python3 serve.py ../../runs/names/export/model.tflite
    # open http://127.0.0.1:8000/?model=model.tflite&seed=9&n=12

The page's files and the LiteRT.js packages are served at their paths in the
page folder and the model under its own file name, so the page's relative URLs
work as they will on any static host. Nothing else is: no other file, no
directory listing, no file reached through a symbolic link out of those, and
no request whose `Host` is not 127.0.0.1 or localhost (a page on another site
that rebinds its DNS name to 127.0.0.1 cannot read from the server).
"""

import argparse
import functools
import http.server
import sys
from http import HTTPStatus
from pathlib import Path

PAGE_DIR = Path(__file__).resolve().parent
PAGE_FILES = ("index.html", "page.js", "makemore.js")
PACKAGES = ("node_modules/@litertjs/core", "node_modules/@litertjs/wasm-utils")  # the page's import map
HOSTS = ("127.0.0.1", "localhost")


class _Handler(http.server.SimpleHTTPRequestHandler):
    model: Path | None = None
    quiet = False

    def do_GET(self):
        if self._host_allowed():
            super().do_GET()

    def do_HEAD(self):
        if self._host_allowed():
            super().do_HEAD()

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        if host.removesuffix(f":{self.server.server_address[1]}") in HOSTS:
            return True
        self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "this server answers only to 127.0.0.1 and localhost")
        return False

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        if self.model is not None and path == "/" + self.model.name:
            return str(self.model)
        local = Path(super().translate_path(path))
        real = local.resolve()  # symbolic links followed, to see where they lead
        allowed = (real == PAGE_DIR or real in (PAGE_DIR / f for f in PAGE_FILES)
                   or any(real.is_relative_to((PAGE_DIR / p).resolve()) for p in PACKAGES))
        return str(real) if allowed else ""  # no such file: 404

    def list_directory(self, path):
        self.send_error(HTTPStatus.NOT_FOUND, "directories are not listed")
        return None

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def serve(model: str | Path | None = None, port: int = 8000, quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """A server (not yet serving) for the page folder, with `model` at `/<its file name>`; port 0 picks a free one."""
    handler = type("Handler", (_Handler,), {"model": Path(model).resolve() if model else None, "quiet": quiet})
    handler.extensions_map = {**handler.extensions_map, ".wasm": "application/wasm", ".js": "text/javascript"}
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(PAGE_DIR)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the keras-makemore web page and a model on 127.0.0.1.")
    parser.add_argument("model", nargs="?", help="a .tflite file written by `keras-makemore export` (optional: "
                                                 "the page also opens files you choose or drop)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    args = parser.parse_args(argv)
    if args.model and not Path(args.model).is_file():
        parser.error(f"model file not found: {args.model}")
    if not (PAGE_DIR / "node_modules" / "@litertjs" / "core").is_dir():
        parser.error(f"LiteRT.js is not installed: run `npm ci` in {PAGE_DIR}")
    server = serve(args.model, args.port)
    query = f"?model={Path(args.model).name}&seed=0&n=24" if args.model else ""
    print(f"Serving on http://127.0.0.1:{server.server_address[1]}/{query}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
