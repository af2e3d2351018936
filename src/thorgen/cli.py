"""The ``thorgen`` command: serve, run one job in-process, show the effective config."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import msgspec

from thorgen.config import Config, ConfigError, default_config_path, load_config, redacted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thorgen", description="A local fal.ai-compatible media server")
    parser.add_argument("--config", type=Path, help="config.toml (default: $THORGEN_CONFIG or ./config.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", help="jobs database and stored files")
    serve.add_argument("--public-url", help="base of the absolute URLs thorgen hands out")

    run = commands.add_parser("run", help="run one job in-process and print its output JSON")
    run.add_argument("endpoint", help="endpoint id, e.g. fal-ai/ffmpeg-api/metadata")
    run.add_argument("--input", required=True, help="input JSON, or @file.json")
    run.add_argument("--data-dir")

    commands.add_parser("config", help="print the effective configuration (secrets masked)")
    commands.add_parser("endpoints", help="list endpoint ids and whether each is available")

    args = parser.parse_args(argv)
    overrides = {
        "server.host": getattr(args, "host", None),
        "server.port": getattr(args, "port", None),
        "storage.data_dir": getattr(args, "data_dir", None),
        "server.public_url": getattr(args, "public_url", None),
    }
    try:
        config = load_config(args.config or default_config_path(), overrides=overrides)
    except ConfigError as exc:
        print(f"thorgen: bad configuration: {exc}", file=sys.stderr)
        return 2
    return {"serve": _serve, "run": _run, "config": _config, "endpoints": _endpoints}[args.command](config, args)


def _serve(config: Config, args: argparse.Namespace) -> int:
    import uvicorn

    from thorgen.app import build_app

    logging.basicConfig(level=config.server.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = build_app(config)
    except ValueError as exc:
        print(f"thorgen: bad configuration: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=config.server.host, port=config.server.port, log_level=config.server.log_level,
                timeout_graceful_shutdown=5)
    return 0


def _run(config: Config, args: argparse.Namespace) -> int:
    from thorgen.client import Client
    from thorgen.errors import FalError

    text = Path(args.input[1:]).read_text() if args.input.startswith("@") else args.input
    try:
        arguments: Any = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        print(f"thorgen: --input is not valid JSON: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    with Client(config) as client:
        try:
            output = client.run(args.endpoint, arguments)
        except FalError as exc:
            print(msgspec.json.encode(exc.body()).decode(), file=sys.stderr)
            return 1
    print(msgspec.json.format(msgspec.json.encode(output)).decode())
    return 0


def _config(config: Config, args: argparse.Namespace) -> int:
    print(msgspec.json.format(msgspec.json.encode(redacted(config))).decode())
    return 0


def _endpoints(config: Config, args: argparse.Namespace) -> int:
    from thorgen.endpoints.registry import Registry

    for row in Registry(config).listing():
        state = "ready" if row["available"] else f"unavailable: {row['reason']}"
        print(f"{row['id']:45} {row['lane']:8} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
