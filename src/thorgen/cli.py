"""The ``thorgen`` command: serve, run one job in-process, show the effective config."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from thorgen import systemd
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
    serve.add_argument("--tiny", action="store_true", default=None,
                       help="serve tiny random-weight models on the CPU (outputs are noise; for trying the wiring)")
    serve.add_argument("--models-dir", help="folder of model weights (default: storage.models_dir)")

    models = commands.add_parser("models", help="list, download or build models")
    models.add_argument("--models-dir", help="folder of model weights (default: storage.models_dir)")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    model_commands.add_parser("list", help="every configured model: installed or not, size, licence")
    pull = model_commands.add_parser("pull", help="download a model from the Hugging Face Hub (HF_TOKEN if gated)")
    pull.add_argument("name")
    tiny = model_commands.add_parser("tiny", help="write tiny random-weight models of every family, offline")
    tiny.add_argument("--force", action="store_true", help="rewrite ones already there")
    verify = model_commands.add_parser("verify", help="check an installed model is complete (exit 1 if not)")
    verify.add_argument("name")
    verify.add_argument("--tiny", action="store_true", help="check the tiny model of that name instead")

    run = commands.add_parser("run", help="run one job in-process and print its output JSON")
    run.add_argument("endpoint", help="endpoint id, e.g. fal-ai/ffmpeg-api/metadata")
    run.add_argument("--input", required=True, help="input JSON, or @file.json")
    run.add_argument("--data-dir")
    run.add_argument("--tiny", action="store_true", default=None,
                     help="run on the tiny random-weight models, as serve --tiny does (outputs are noise)")

    commands.add_parser("doctor", help="check this machine: torch/CUDA, memory budget, codecs, disk, models, port")

    service = commands.add_parser("service", help="install or remove the systemd service")
    service_commands = service.add_subparsers(dest="service_command", required=True)
    install = service_commands.add_parser("install", help="write, enable (not start) thorgen.service")
    install.add_argument("--user", default="thorgen", help="the dedicated user it runs as (created if missing)")
    install.add_argument("--env-file", type=Path, default=systemd.DEFAULT_ENV_FILE,
                         help="settings and secrets (API key, HF token) for the service")
    install.add_argument("--unit-dir", type=Path, default=systemd.DEFAULT_UNIT_DIR)
    install.add_argument("--dry-run", action="store_true", help="print the unit, change nothing")
    uninstall = service_commands.add_parser("uninstall", help="stop, disable and remove thorgen.service")
    uninstall.add_argument("--unit-dir", type=Path, default=systemd.DEFAULT_UNIT_DIR)

    files = commands.add_parser("files", help="stored files and jobs on disk")
    file_commands = files.add_subparsers(dest="files_command", required=True)
    prune = file_commands.add_parser("prune", help="remove jobs finished more than DAYS ago and files no newer "
                                                   "job names (queued and running jobs are never touched)")
    prune.add_argument("--older-than", type=float, required=True, metavar="DAYS",
                       help="what finished, or was last written, more than DAYS ago (fractions allowed)")
    prune.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    prune.add_argument("--data-dir", help="jobs database and stored files")

    commands.add_parser("config", help="print the effective configuration (secrets masked)")
    commands.add_parser("endpoints", help="list endpoint ids and whether each is available")

    kit = commands.add_parser("kit", help="point a video-starter-kit checkout at this thorgen (and undo it)")
    kit_commands = kit.add_subparsers(dest="kit_command", required=True)
    kit_setup = kit_commands.add_parser("setup", help="write next.config.mjs rewrites and .env.local")
    kit_setup.add_argument("kit_dir", type=Path, help="the video-starter-kit checkout")
    kit_setup.add_argument("--url", help="thorgen's URL as the kit's Next server reaches it "
                                         "(default: server.public_url, else http://127.0.0.1:<port>)")
    kit_setup.add_argument("--undo", action="store_true", help="put back the files setup replaced")
    kit_setup.add_argument("--local-badge", action="store_true",
                           help='also show "Local · thorgen" in the editor\'s header (a small, reversible patch)')

    _accept_config_after_command(parser)
    args = parser.parse_args(argv)
    overrides = {
        "server.host": getattr(args, "host", None),
        "server.port": getattr(args, "port", None),
        "storage.data_dir": getattr(args, "data_dir", None),
        "server.public_url": getattr(args, "public_url", None),
        "storage.models_dir": getattr(args, "models_dir", None),
        "runtime.tiny": getattr(args, "tiny", None),
    }
    try:
        config = load_config(args.config or default_config_path(), overrides=overrides)
    except ConfigError as exc:
        if args.command == "doctor":
            from thorgen.doctor import FAIL, Finding, render

            print(render([Finding("config", FAIL, str(exc))]))
            return 1
        print(f"thorgen: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "kit":
        return _kit(config, args)
    commands_by_name = {"serve": _serve, "run": _run, "config": _config, "endpoints": _endpoints,
                        "models": _models, "doctor": _doctor, "service": _service, "files": _files}
    return commands_by_name[args.command](config, args)


def _accept_config_after_command(parser: argparse.ArgumentParser) -> None:
    """`thorgen serve --config x.toml` as well as `thorgen --config x.toml serve`, for every command
    and subcommand (all of them read the configuration). SUPPRESS: a command that is not given
    --config leaves the one given before it (or none) in place."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                                     help="config.toml (default: $THORGEN_CONFIG or ./config.toml)")
                _accept_config_after_command(command)


def _serve(config: Config, args: argparse.Namespace) -> int:
    # Serving never downloads: weights come only from `thorgen models pull`. Set before any import of
    # huggingface_hub, which reads it once.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from thorgen.logs import log_config, quiet_progress_bars

    quiet_progress_bars()
    import uvicorn

    from thorgen.app import build_app

    logging.config.dictConfig(log_config(config.server.log_level))
    try:
        app = build_app(config)
    except ValueError as exc:
        print(f"thorgen: bad configuration: {exc}", file=sys.stderr)
        return 2
    # The same dictConfig again for uvicorn, which applies its log_config when it starts: its own
    # lines then share thorgen's format instead of uvicorn's default one.
    uvicorn.run(app, host=config.server.host, port=config.server.port, log_level=config.server.log_level,
                log_config=log_config(config.server.log_level), timeout_graceful_shutdown=5)
    return 0


def _run(config: Config, args: argparse.Namespace) -> int:
    from thorgen.client import Client
    from thorgen.errors import FalError

    try:
        text = Path(args.input[1:]).read_text() if args.input.startswith("@") else args.input
    except OSError as exc:
        print(f"thorgen: cannot read --input {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        arguments: Any = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        print(f"thorgen: --input is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if _unknown_endpoint(config, args.endpoint):
        print(f"thorgen: no endpoint {args.endpoint!r} here; `thorgen endpoints` lists them", file=sys.stderr)
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


def _unknown_endpoint(config: Config, endpoint_id: str) -> bool:
    from thorgen.families.registry import Registry

    return Registry(config).find(endpoint_id) is None


def _config(config: Config, args: argparse.Namespace) -> int:
    print(msgspec.json.format(msgspec.json.encode(redacted(config))).decode())
    return 0


def _endpoints(config: Config, args: argparse.Namespace) -> int:
    from thorgen.families.registry import Registry

    rows = []
    for row in Registry(config).listing():
        if row["available"]:
            state = "ready"
        elif row["alias_of"]:  # its target's row gives the reason, once
            state = f"unavailable (as {row['alias_of']})"
        else:  # the row names the endpoint already
            state = "unavailable: " + row["reason"].removeprefix(f"Endpoint '{row['id']}' cannot run: ")
        rows.append([row["id"], row["lane"], state])
    _print_table(["endpoint", "lane", "state"], rows)
    return 0


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns that line up whatever the lengths (rich measures them). On a terminal the last column
    wraps to its width; into a pipe or a file each row stays one line, for grep."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    terminal = sys.stdout.isatty()
    table = Table(box=box.SIMPLE_HEAD if terminal else None, show_edge=False, pad_edge=False,
                  header_style="bold" if terminal else "")
    for index, header in enumerate(headers):
        table.add_column(header, no_wrap=not terminal or index < len(headers) - 1)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: "thorgen[tts]" is not rich markup
    if terminal:
        Console(highlight=False, emoji=False).print(table)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False, emoji=False).print(table)
    print("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()))


def _doctor(config: Config, args: argparse.Namespace) -> int:
    from thorgen.doctor import exit_code, render, run_checks

    logging.basicConfig(level=logging.ERROR)
    findings = run_checks(config)
    print(render(findings))
    return exit_code(findings)


def _service(config: Config, args: argparse.Namespace) -> int:
    if args.service_command == "uninstall":
        done = systemd.uninstall(args.unit_dir, system=args.unit_dir == systemd.DEFAULT_UNIT_DIR)
        print("\n".join(done) or "thorgen.service was not installed")
        return 0
    plan = systemd.plan(config, args.config or default_config_path(), args.user, args.env_file)
    if args.dry_run:
        print(systemd.render_unit(plan), end="")
        return 0
    try:
        done = systemd.install(plan, args.unit_dir, system=args.unit_dir == systemd.DEFAULT_UNIT_DIR)
    except (PermissionError, OSError) as exc:
        print(f"thorgen: {exc}", file=sys.stderr)
        return 1
    print("installed: " + "; ".join(done))
    print("start it with: sudo systemctl start thorgen   (logs: journalctl -u thorgen -f)")
    return 0


def _files(config: Config, args: argparse.Namespace) -> int:
    """thorgen files prune: see thorgen.jobs.housekeeping for what goes and what stays."""
    import datetime

    from thorgen.jobs.housekeeping import apply_prune, plan_prune
    from thorgen.jobs.store import JobStore
    from thorgen.jobs.stores import open_store
    from thorgen.media.store import MediaStore

    if args.older_than < 0:
        print("thorgen: --older-than must be 0 or more days", file=sys.stderr)
        return 2
    database = config.data_dir / "jobs.sqlite3"
    if not config.jobs.database and not database.exists():
        print(f"thorgen: no jobs database in {config.data_dir}", file=sys.stderr)
        return 1
    # A cluster's jobs are in its PostgreSQL database: old jobs go for every node, files from this
    # node's data folder only (each node prunes its own; a file no remaining job names is old news).
    store = open_store(config) if config.jobs.database else JobStore(database)
    try:
        media = MediaStore(config.data_dir / "files")
        plan = plan_prune(store, media, args.older_than)
        verb = "would remove" if args.dry_run else "removing"
        for job_id, endpoint_id, finished_at in plan.jobs:
            finished = datetime.datetime.fromtimestamp(finished_at).isoformat(timespec="seconds")
            print(f"{verb} job  {job_id}  {endpoint_id}  finished {finished}")
        for key, size in plan.files:
            print(f"{verb} file {key}  {size} bytes")
        if args.dry_run:
            print(f"dry run: {len(plan.jobs)} job(s) and {len(plan.files)} file(s) ({plan.file_bytes} bytes) "
                  "would be removed; nothing was")
            return 0
        jobs, files = apply_prune(store, media, plan)
        print(f"removed {jobs} job(s) and {files} file(s) ({plan.file_bytes} bytes)")
        return 0
    finally:
        store.close()


def _models(config: Config, args: argparse.Namespace) -> int:
    if args.models_command == "list":
        return _models_list(config)
    if args.models_command == "verify":
        return _models_verify(config, args)
    if args.models_command == "tiny":
        from thorgen.families import write_missing_tiny
        from thorgen.models.runtime import as_tiny

        logging.basicConfig(level=logging.WARNING)
        written = write_missing_tiny(config, force=args.force)
        where = as_tiny(config).models_dir
        print(f"wrote {len(written)} tiny model(s) to {where}: {', '.join(written) or 'all were there'}")
        print("serve them with: thorgen serve --tiny")
        return 0
    from thorgen.families import PullError, pull

    try:
        target = pull(config, args.name)
    except PullError as exc:
        print(f"thorgen: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} is installed in {target}")
    return 0


def _models_verify(config: Config, args: argparse.Namespace) -> int:
    from thorgen.models.runtime import as_tiny
    from thorgen.models.verify import verify_model_folder

    checked = as_tiny(config) if args.tiny else config
    if args.name not in checked.models:
        print(f"thorgen: no [models.{args.name}] is configured (see `thorgen models list`)", file=sys.stderr)
        return 1
    path = checked.model_path(args.name)
    problems = verify_model_folder(path)
    for problem in problems:
        print(problem)
    print(f"{args.name}: {len(problems)} problem(s) in {path}" if problems else f"{args.name}: complete ({path})")
    return 1 if problems else 0


def _models_list(config: Config) -> int:
    from thorgen.families import catalog, downloads
    from thorgen.models.catalog import approx_size
    from thorgen.models.installed import all_model_status, size_on_disk

    loaded = _loaded_on_server(config)
    rows, hints = [], []
    for status in all_model_status(config):
        entry = catalog().get(status.name)
        size = f"{size_on_disk(config, status.name) / 1024**3:.2f} GiB" if status.installed else "-"
        if loaded is None:
            in_memory = "?"
        else:
            in_memory = "yes" if status.name in loaded else "no"
        source = config.model(status.name).source or "(tiny)"
        licence = f"{entry.licence}{', gated: needs HF_TOKEN' if entry.gated else ''}" if entry else ""
        model = config.model(status.name)
        tuning = ", ".join([*([model.quantization] if model.quantization != "none" else []),
                            *(["compiled"] if model.compile else [])]) or "-"
        rows.append([status.name, status.family, "yes" if status.installed else "NO", size, in_memory, tuning,
                     source, licence])
        if not status.installed:
            approx = f" (about {approx_size(entry.approx_bytes)})" if entry and not config.runtime.tiny else ""
            hints.append(f"get {status.name} with: {status.install_hint}{approx}")
    if not config.runtime.tiny:  # tiny mode never runs the guardrail (nor, so far, any other download)
        for download in downloads().values():
            rows.append([download.name, download.kind, download.installed(), "-", "-", "-", download.source,
                         download.licence])
            hints.append(f"get {download.name} with: {download.install_hint()}")
    _print_table(["model", "family", "installed", "on disk", "loaded", "tuning", "source", "licence"], rows)
    for hint in hints:
        print(hint)
    if loaded is None:
        print("(loaded: ? — no thorgen server answers on the configured port)")
    return 0


def _loaded_on_server(config: Config) -> set[str] | None:
    """Which models a running server holds now, from its /info; None when none answers."""
    import httpx

    host = "127.0.0.1" if config.server.host in ("0.0.0.0", "::") else config.server.host
    try:
        info = httpx.get(f"http://{host}:{config.server.port}/info", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    return {model["name"] for model in info.get("runtime", {}).get("loaded", [])}


def _kit(config: Config, args: argparse.Namespace) -> int:
    from thorgen.kit import KitSetupError, setup, undo

    try:
        if args.undo:
            print("\n".join(undo(args.kit_dir)))
            return 0
        host = "127.0.0.1" if config.server.host in ("0.0.0.0", "::") else config.server.host
        url = args.url or config.server.public_url or f"http://{host}:{config.server.port}"
        result = setup(args.kit_dir, url, local_badge=args.local_badge)
    except KitSetupError as exc:
        print(f"thorgen: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(result.written)} in {args.kit_dir}: /api/fal and /api/uploadthing go to "
          f"{result.thorgen_url}")
    print(f"next, in {args.kit_dir}:\n" + "".join(f"  {step}\n" for step in result.next_steps), end="")
    print(f"then open the editor: {result.editor_url}   (start thorgen first: thorgen serve)")
    print(f"undo with: thorgen kit setup --undo {args.kit_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
