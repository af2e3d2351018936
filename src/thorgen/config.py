"""thorgen's configuration: one typed tree, decoded once.

Sources, later ones winning: the Struct defaults below, a TOML file (``--config``, ``$THORGEN_CONFIG``
or ``./config.toml``), ``THORGEN_*`` environment variables, then command-line flags.

Relative folders (``storage.data_dir``, ``storage.models_dir``) written in the TOML file are relative
to that file's folder; from environment variables, flags or the defaults, to the working directory.

Environment variables name a key by its path with ``__`` between levels, for example
``THORGEN_SERVER__PORT=10001`` or ``THORGEN_LIMITS__FETCH_TIMEOUT_S=5``. List values are written as
JSON (``["http://a", "http://b"]``) or comma-separated. Credentials (``server.api_key``) are read
from the environment only, never from a file.
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# Range constraints live on the fields: msgspec refuses a value outside them when the tree is
# decoded, and load_config names the key ("server.port: Expected `int` <= 65535").
Positive = Meta(gt=0)
PositiveInt = Annotated[int, Positive]
PositiveFloat = Annotated[float, Positive]


class ConfigError(Exception):
    """A configuration problem, with a message that names the offending key."""


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 10000
    # Base for the absolute URLs thorgen hands out (files, upload targets). Empty: derive it from
    # each request's own scheme and Host header, so a browser on another machine gets URLs it reaches.
    public_url: str = ""
    # When set, every request except /health and /ready must carry ``Authorization: Key <api_key>``
    # (or Bearer). File downloads stay open so <video>/<img> tags work; upload URLs are signed.
    # Environment only.
    api_key: str = ""
    # Host names (or "name:port") served besides loopback and public_url's host; anything else gets
    # 421, which defeats DNS rebinding. ["*"] serves any Host (only behind a proxy that checks it).
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    # Browser origins whose pages may call the API (submit, cancel, upload). thorgen's own origin is
    # always allowed. The default is the video-starter-kit's dev server. ["*"] allows every web page.
    cors_origins: list[str] = msgspec.field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"])
    # With api_key set, let /metrics answer without it (for a Prometheus that cannot send a header).
    metrics_public: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Holds the jobs database (jobs.sqlite3) and every stored file (files/).
    data_dir: str = "data"
    # Model weights, one folder per model; never written at serve time.
    models_dir: str = "models"
    max_upload_bytes: PositiveInt = 2 * 1024**3
    # How long an upload URL (or fal's Python-client upload token) stays valid after it is issued.
    # Each upload URL takes one complete write; stored files are never replaced.
    upload_ttl_s: PositiveFloat = 3600.0


class LanesConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The GPU lane always has exactly one worker: diffusers pipelines are not safe to call
    # concurrently, and one process owns the accelerator. Utility (ffmpeg) work runs beside it.
    utility_workers: Annotated[int, Meta(ge=1)] = 2


class JobsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Empty: the embedded SQLite database in the data folder (one machine). A PostgreSQL URL
    # ("postgresql://user:pass@host/db"): every thorgen started with the same URL joins one cluster
    # behind one queue (README: Several machines).
    database: str = ""
    # This node's name in the cluster; empty: "<host name>:<port>". Keep it stable across restarts:
    # a restarted node settles its own interrupted jobs by it.
    node_id: str = ""
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    # A node whose last beat is older than this is lost: its running jobs end with an error.
    node_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    # A GPU lane takes jobs for a model it has loaded before older ones for other models, but only
    # while those have waited less than this: then they rank by age again (bounded unfairness).
    prefer_loaded_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_request_bytes: PositiveInt = 32 * 1024**2  # JSON bodies of submit / run
    max_fetch_bytes: PositiveInt = 1024**3  # http(s) file inputs thorgen downloads
    fetch_timeout_s: PositiveFloat = 30.0
    # Hosts (name or name:port) that file inputs may be fetched from, and webhooks posted to, even
    # though they resolve to a private or loopback address (media/outbound.py), e.g. a NAS or a
    # webhook receiver on the LAN: ["nas.local", "192.168.1.20:8080"].
    fetch_allowed_hosts: list[str] = msgspec.field(default_factory=list)
    sse_keepalive_s: PositiveFloat = 10.0  # Next's rewrite proxy drops streams idle for 30 s
    sync_run_timeout_s: PositiveFloat = 3600.0
    webhook_timeout_s: PositiveFloat = 10.0
    # The most pixels thorgen decodes in one image or video frame, or produces by scaling one
    # (8192×8192: see thorgen.media.pixels for why). Larger inputs are refused with a 422.
    max_image_pixels: int = 8192 * 8192


class RuntimeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The most bytes of model weights thorgen keeps loaded at once. budget_bytes wins when set;
    # otherwise budget_fraction of the memory models can use (see thorgen.models.memory: on a
    # unified-memory device such as a Jetson it is system memory, MemAvailable plus what thorgen
    # already holds; on a discrete GPU it is the GPU's total memory).
    budget_bytes: Annotated[int, Meta(ge=0)] = 0  # 0: use budget_fraction
    budget_fraction: Annotated[float, Meta(gt=0, le=1)] = 0.75
    # Serve tiny random-weight models (written by `thorgen models tiny`) on the CPU in fp32: every
    # endpoint works, and every output is noise. For trying the wiring and for tests.
    tiny: bool = False


class CosmosConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Output size for each aspect ratio: 720p (1280x704 at 16:9, Cosmos's native size) or 480p
    # (832x480), which is about 2.3 times fewer pixels and so much faster.
    resolution: Literal["720p", "480p"] = "720p"
    # The NVIDIA Open Model License requires a safety guardrail with Cosmos: the cosmos_guardrail
    # package checks every prompt and every generated clip. false turns it off: see the README.
    # Tiny mode never runs it (tiny outputs are noise).
    guardrail: bool = True
    # With Predict2 Video2World answering text-to-video, this model makes the first frame.
    first_frame_model: str = "cosmos-predict2-text2image"


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    family: str
    path: str  # folder in diffusers save_pretrained layout (or a .nemo file), relative to models_dir
    source: str = ""  # where `thorgen models pull` gets it, e.g. a Hugging Face repo id
    revision: str = ""  # a branch or commit of source; empty: its default branch
    pipeline: str = ""  # the concrete pipeline class that loads it, e.g. FluxPipeline
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    device: str = "auto"  # auto: cuda when torch sees a GPU, else cpu
    pinned: bool = False  # never evicted once loaded
    preload: bool = False  # loaded in the background at start; /ready waits for it
    # fal's `acceleration` when a request does not send one (Flux: diffusers' cache hooks, see
    # families/acceleration.py). A request's own value wins.
    acceleration: Literal["none", "regular", "high"] = "none"
    # Weights of the transformer through torchao (models/tuning.py): "int8" weight-only (anywhere,
    # about half of bf16's bytes), "fp8" weights and activations (CUDA compute capability 8.9+ only;
    # elsewhere the model is refused at start). Needs the torchao extra.
    quantization: Literal["none", "int8", "fp8"] = "none"
    # Compile the transformer's repeated blocks after loading, warm up, and keep inductor's cache in
    # <data_dir>/compile-cache; the model is then loaded at start, as with preload (see README).
    compile: bool = False


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    lanes: LanesConfig = msgspec.field(default_factory=LanesConfig)
    jobs: JobsConfig = msgspec.field(default_factory=JobsConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    cosmos: CosmosConfig = msgspec.field(default_factory=CosmosConfig)
    models: dict[str, ModelConfig] = msgspec.field(default_factory=dict)
    # Extra endpoint ids answered by another endpoint: {"fal-ai/my-id": "fal-ai/ffmpeg-api/metadata"}.
    aliases: dict[str, str] = msgspec.field(default_factory=dict)
    # Which model an endpoint runs, where it is not the endpoint's own default:
    # {"fal-ai/flux/dev" = "flux-schnell"}.
    endpoint_models: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir).expanduser().resolve()

    @property
    def models_root(self) -> Path:
        """The configured weights folder (storage.models_dir), tiny mode or not."""
        return Path(self.storage.models_dir).expanduser().resolve()

    @property
    def models_dir(self) -> Path:
        """Where models load from: models_root, or with runtime.tiny its ``tiny`` folder."""
        return self.models_root / "tiny" if self.runtime.tiny else self.models_root

    @property
    def guardrail_on(self) -> bool:
        """Whether Cosmos runs its guardrail: as configured, and never in tiny mode."""
        return self.cosmos.guardrail and not self.runtime.tiny

    def model(self, name: str) -> ModelConfig:
        """A model's settings as they apply now: tiny models always run on the CPU in fp32."""
        model = self.models[name]
        if self.runtime.tiny:
            return msgspec.structs.replace(model, path=name, device="cpu", dtype="float32", source="")
        return model

    def model_path(self, name: str) -> Path:
        return (self.models_dir / self.model(name).path).resolve()


ENV_PREFIX = "THORGEN_"
_NOT_FROM_FILE = {("server", "api_key")}


def default_config_path() -> Path | None:
    explicit = os.environ.get("THORGEN_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("config.toml")
    return local if local.exists() else None


def load_config(
    path: Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Decode the whole tree once. ``overrides`` are dotted keys from command-line flags."""
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}  # dotted key -> the env var or flag that set it, for error messages
    if path is not None:
        raw = _read_toml(path)
        _anchor_folders(raw, path)
    # Known models (every family's catalog) are defaults: a [models.NAME] table changes only the keys it names.
    from thorgen.families import default_models

    models = default_models()
    for name, table in (raw.get("models") or {}).items():
        models[name] = {**models.get(name, {}), **table} if isinstance(table, dict) else table
    raw["models"] = models
    if path is not None:
        for section, key in _NOT_FROM_FILE:
            if raw.get(section, {}).get(key):
                raise ConfigError(
                    f"{path}: {section}.{key} must not be written in a file; set "
                    f"{ENV_PREFIX}{section.upper()}__{key.upper()} in the environment instead"
                )
    env = os.environ if environ is None else environ
    for name, value in sorted(env.items()):
        if name.startswith(ENV_PREFIX) and "__" in name:
            _set_path(raw, _env_key_path(name), value, source=name)
            sources[".".join(_env_key_path(name))] = name
    for dotted, value in (overrides or {}).items():
        if value is not None:
            flag = "--" + dotted.split(".")[-1].replace("_", "-")
            _set_path(raw, dotted.split("."), value, source=flag)
            sources[dotted] = flag
    try:
        config = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        if "`$.models[...]" in str(exc):
            _name_bad_model(raw["models"], sources, path)
        key, message = _name_key(str(exc))
        where = sources.get(key) or (str(path) if path else "configuration")
        raise ConfigError(f"{key}: {message} (set in {where})" if key else f"{where}: {message}") from None
    _check(config)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _anchor_folders(raw: dict[str, Any], path: Path) -> None:
    """Folders written in a config file are relative to that file's folder, so the same file means the
    same folders wherever thorgen is started from (a service, a script, another shell). Folders from
    environment variables and flags stay relative to the working directory, as a shell user expects."""
    storage = raw.get("storage")
    if not isinstance(storage, dict):
        return
    for key in ("data_dir", "models_dir"):
        value = storage.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            storage[key] = str(path.resolve().parent / value)


def _env_key_path(name: str) -> list[str]:
    return [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]


def _set_path(raw: dict[str, Any], keys: list[str], value: Any, *, source: str) -> None:
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(_match_key(node, key), {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(keys)} does not name a configuration key")
        node = child
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            raise ConfigError(f"{source}: value is not valid JSON") from None
    elif isinstance(value, str) and keys[-1] in ("cors_origins", "allowed_hosts", "fetch_allowed_hosts"):
        value = [item.strip() for item in value.split(",") if item.strip()]
    node[_match_key(node, keys[-1])] = value


def _match_key(node: dict[str, Any], key: str) -> str:
    """Environment names cannot hold '-': let FLUX_DEV find an existing 'flux-dev' table."""
    for existing in node:
        if existing.lower().replace("-", "_") == key.replace("-", "_"):
            return existing
    return key


def _name_bad_model(models: dict[str, Any], sources: dict[str, str], path: Path | None) -> None:
    """msgspec names a dict entry "models[...]": decode each table alone to say which model."""
    for name, table in models.items():
        try:
            msgspec.convert(table, ModelConfig, strict=False)
        except msgspec.ValidationError as exc:
            key, message = _name_key(str(exc))
            dotted = f"models.{name}.{key}" if key else f"models.{name}"
            where = (sources.get(dotted) or sources.get(dotted.replace("-", "_"))
                     or (str(path) if path else "configuration"))
            raise ConfigError(f"{dotted}: {message} (set in {where})") from None


def _name_key(message: str) -> tuple[str, str]:
    """msgspec says '... - at `$.server.port`': split out the key, the way a user looks for it."""
    text, sep, where = message.rpartition(" - at `$.")
    return (where.rstrip("`"), text) if sep else ("", message)


def _check(config: Config) -> None:
    """What one field's constraints cannot say: URL shapes, and keys that must name another table."""
    problems = []
    if config.server.public_url and not config.server.public_url.startswith(("http://", "https://")):
        problems.append("server.public_url: must start with http:// or https://")
    for origin in config.server.cors_origins:
        parts = urllib.parse.urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.hostname
                              or parts.path.strip("/") or parts.query):
            problems.append(f"server.cors_origins: {origin!r} is not an origin like http://host:3000 (or \"*\")")
    if config.jobs.database and not config.jobs.database.startswith(("postgresql://", "postgres://")):
        problems.append("jobs.database: must be empty (SQLite) or a postgresql:// URL")
    for endpoint_id, name in config.endpoint_models.items():
        if name not in config.models:
            problems.append(f"endpoint_models.{endpoint_id}: no [models.{name}] table")
    if config.cosmos.first_frame_model not in config.models:
        problems.append(f"cosmos.first_frame_model: no [models.{config.cosmos.first_frame_model}] table")
    for alias, target in config.aliases.items():
        if alias.count("/") < 1 or target.count("/") < 1:
            problems.append(f"aliases.{alias}: endpoint ids look like owner/alias[/path]")
    if problems:
        raise ConfigError("; ".join(problems))


def redacted(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, with secrets masked (for `thorgen config`, /info)."""
    data = msgspec.to_builtins(config)
    if data["server"]["api_key"]:
        data["server"]["api_key"] = "***"
    database = urllib.parse.urlsplit(data["jobs"]["database"])
    if database.password:  # postgresql://user:PASSWORD@host/db
        netloc = database.netloc.replace(f":{database.password}@", ":***@", 1)
        data["jobs"]["database"] = database._replace(netloc=netloc).geturl()
    return data
