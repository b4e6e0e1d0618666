#!/usr/bin/env python3
"""Serve the page, its LiteRT.js runtime and one model from 127.0.0.1 (the standard library only).

    cd export/web && npm ci
    python3 serve.py ../../runs/names/export/model.tflite
    # open http://127.0.0.1:8000/?model=model.tflite&seed=9&n=12

The page folder is served as it is and the model under its own file name,
so the page's relative URLs work as they will on any static host.
"""

import argparse
import functools
import http.server
import sys
from pathlib import Path

PAGE_DIR = Path(__file__).resolve().parent


class _Handler(http.server.SimpleHTTPRequestHandler):
    model: Path | None = None
    quiet = False

    def translate_path(self, path):
        if self.model is not None and path.split("?", 1)[0] == "/" + self.model.name:
            return str(self.model)
        return super().translate_path(path)

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
