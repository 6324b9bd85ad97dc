"""One typed settings object, and the one place that reads it: `LOTLENS_*` environment variables,
an optional `.env` file in the working folder, and an optional secrets folder (`LOTLENS_SECRETS_DIR`,
one file per setting, e.g. `LOTLENS_API_KEYS`), in that order of precedence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from lotlens.errors import ConfigError

ENV_PREFIX = "LOTLENS_"
ENV_FILE = ".env"
MASK = "***"


class ApiKey(BaseModel):
    """An API key. Roles: `scraper`, `staff`, `admin`, `advertiser:<id>`."""

    name: str
    key: str = Field(min_length=16, repr=False)
    role: str = Field(pattern=r"^(scraper|staff|admin|advertiser:.+)$")


class Settings(BaseSettings):
    """lotlens settings. Built once at an edge (the CLI, the server, a worker) and passed down;
    frozen, so what a process logged at start is what it runs with (`model_copy(update=...)` makes
    a changed copy)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_file=ENV_FILE, frozen=True)

    data_dir: Path = Field(default=Path("lotlens-data"), description="local data folder")
    storage_url: str | None = Field(
        default=None,
        description="where kept images, datasets and models live: a folder, file://, or s3://bucket/prefix; "
        "None = data_dir",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="s3:// storage: an S3-compatible endpoint (MinIO, Ceph); None = AWS"
    )
    s3_region: str | None = Field(default=None, description="s3:// storage: the region; None = AWS's own lookup")
    s3_access_key_id: str | None = Field(
        default=None, description="s3:// storage: the key id; None = the AWS chain (AWS_* variables, profile, role)"
    )
    s3_secret_access_key: SecretStr | None = Field(default=None, description="s3:// storage: the secret key")
    cache_dir: Path | None = Field(
        default=None, description="local copies of stored models and datasets; None = data_dir/cache"
    )
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; None = SQLite under data_dir")
    model_dir: Path | None = Field(default=None, description="model folder; None = the bundled model")
    max_pixels: int = Field(default=50_000_000, gt=0, description="decoded pixel limit (bombs)")
    max_image_bytes: int = Field(default=20_000_000, gt=0, description="largest image file accepted")
    allow_private_addresses: bool = Field(default=False, description="tests only: fetch from private hosts")
    fetch_timeout: float = Field(default=10.0, gt=0, description="read/write/pool timeout, seconds")
    fetch_connect_timeout: float = Field(default=5.0, gt=0, description="connect timeout, seconds")
    fetch_total_timeout: float = Field(default=30.0, gt=0, description="one download, redirects included")
    fetch_concurrency: int = Field(default=32, gt=0, description="downloads in flight, all hosts")
    fetch_per_host: int = Field(default=6, gt=0, description="downloads in flight per host")
    fetch_retries: int = Field(default=2, ge=0, description="retries after a 5xx or a timeout")
    fetch_backoff: float = Field(default=0.5, ge=0, description="first retry delay, seconds (doubles)")
    phash_distance: int = Field(default=6, ge=0, le=32, description="bits: a fixed image's re-encodings")
    key_modes: dict[str, Literal["auto", "header", "content"]] = Field(
        default_factory=dict, description='per advertiser: {"adv": "content"} forces content keys'
    )
    max_batch: int = Field(default=1000, gt=0, description="images per /v1/classify request")
    max_body_bytes: int = Field(
        default=8_000_000, gt=0, description="largest request body accepted (checked while it streams in)"
    )
    batch_deadline: float = Field(
        default=60.0, gt=0, description="seconds a /v1/classify batch may take; what is left is skipped as `deadline`"
    )
    decode_memory: int = Field(
        default=512_000_000, gt=0, description="bytes of full-size decodes in flight at once (large PNGs wait)"
    )
    api_keys: list[ApiKey] = Field(default_factory=list, description='JSON: [{"name", "key", "role"}]')
    host: str = Field(default="127.0.0.1", description="serve: address to bind")
    port: int = Field(default=8000, gt=0, lt=65536, description="serve: port")
    trusted_proxies: str = Field(
        default="127.0.0.1",
        description="serve: comma-separated addresses or networks whose X-Forwarded-Proto/-For are believed; * = any",
    )
    model_poll_seconds: float = Field(default=10.0, gt=0, description="how often serve checks for a new champion")
    keep_images: bool = Field(default=True, description="keep classified images' bytes for datasets")
    dataset_min_side: int = Field(default=64, ge=1, description="datasets drop images smaller than this")
    dataset_test_size: float = Field(default=0.3, gt=0, lt=1, description="share of advertisers held out")
    verify_fraction: float = Field(
        default=0.02, ge=0, le=1, description="share of header-key hits fetched anyway to check the CDN"
    )
    url_trust_checks: int = Field(
        default=1000,
        ge=0,
        description="checks of a host's known URLs finding the same bytes, with no change ever, after which "
        "its known URLs are answered without a request (0: never)",
    )
    batch_size: int = Field(default=16, gt=0, description="images per inference batch")
    threads: int = Field(
        default=0, ge=0, description="onnxruntime threads per model call; 0 = all cores (serving: cores / 2 calls)"
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs review-page session cookies; None = derived from the API keys (set it to rotate sessions)",
    )
    session_hours: float = Field(default=12.0, gt=0, description="review pages: how long a sign-in lasts")
    page_size: int = Field(default=100, gt=0, le=1000, description="review pages: images per inventory page")
    low_confidence: float = Field(
        default=0.5, gt=0, lt=1, description="review pages: a model score under this counts as low confidence"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="least severe log line")
    log_format: Literal["text", "json"] = Field(default="text", description="log lines for people or for a collector")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        import ipaddress

        for item in (v.strip() for v in value.split(",")):
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError("each item must be an address, a network (10.0.0.0/8) or *") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _parseable_url(cls, value: str | None) -> str | None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if value is not None:
            try:
                make_url(value)
            except ArgumentError:
                # ArgumentError quotes the whole URL, password included: say the rule, not the value.
                raise ValueError(
                    "not a database URL; expected postgresql+psycopg://USER:PASSWORD@HOST/DB or sqlite:///PATH"
                ) from None
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme in ("", "file"):
            return value
        if parts.scheme != "s3":
            raise ValueError("must be a folder, file:///PATH or s3://BUCKET[/PREFIX]")
        if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
            # Never echo the value: a URL with credentials in it would land in the error line.
            raise ValueError("must be s3://BUCKET[/PREFIX] (credentials go in LOTLENS_S3_* or AWS_* variables)")
        return value

    broker_url: str | None = Field(
        default=None, description="Celery broker (amqp:// or redis://); None = jobs run in serve's own pool"
    )
    broker_visibility_timeout: float = Field(
        default=7200.0, gt=0, description="redis broker: seconds before an unacked task goes to another worker"
    )
    job_queue: str = Field(default="lotlens", min_length=1, description="the broker queue job tasks go through")
    max_job: int = Field(default=100_000, gt=0, description="images per job")
    job_chunk: int = Field(default=250, gt=0, description="images per chunk: the unit a worker runs and redoes")
    job_chunk_tries: int = Field(default=3, gt=0, description="tries of a chunk before its job fails")
    job_pool: int = Field(default=1, gt=0, description="without a broker: jobs serve runs at once")
    webhook_secret: SecretStr | None = Field(default=None, description="signs job webhooks: whsec_<base64 key>")
    webhook_tries: int = Field(default=5, gt=0, description="tries of a job webhook")
    webhook_backoff: float = Field(
        default=60.0, ge=0, description="seconds before the second try; x4 each time (60 s: 5 tries span 85 min)"
    )
    webhook_timeout: float = Field(default=10.0, gt=0, description="seconds one webhook try may take")

    api_url: str = Field(default="http://127.0.0.1:8000", description="lotlens jobs: the server to talk to")
    api_key: SecretStr | None = Field(default=None, description="lotlens jobs: the API key it sends")

    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file under `data_dir`."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'lotlens.db').resolve()}"

    def resolved_storage_url(self) -> str:
        """The storage root: `storage_url`, or the data folder (absolute) when none is set."""
        if self.storage_url is None:
            return str(self.data_dir.resolve())
        if self.storage_url.startswith("file://"):
            return str(Path(self.storage_url.removeprefix("file://")).resolve())
        if "://" not in self.storage_url:
            return str(Path(self.storage_url).resolve())
        return self.storage_url.rstrip("/")

    def resolved_cache_dir(self) -> Path:
        """Where models and datasets from the storage root are copied before they are read."""
        return (self.cache_dir or self.data_dir / "cache").resolve()

    def database_for_display(self) -> str:
        """The database URL with its password masked: safe for logs and error messages."""
        from sqlalchemy.engine import make_url

        return make_url(self.resolved_database_url()).render_as_string(hide_password=True)

    def for_display(self) -> dict[str, Any]:
        """Every setting by its variable name, secrets masked, paths absolute (`lotlens config show`)."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump(mode="json").items():
            if name == "api_keys":
                value = [{"name": k["name"], "role": k["role"], "key": MASK} for k in value]
            elif name in ("session_secret", "s3_secret_access_key") and value is not None:
                value = MASK
            elif name == "database_url" and value is not None:
                value = self.database_for_display()
            elif name in ("data_dir", "model_dir", "cache_dir") and value is not None:
                value = str(Path(value).resolve())
            elif name == "storage_url":
                value = self.resolved_storage_url()
            shown[ENV_PREFIX + name.upper()] = value
        return shown


class _Locations(BaseSettings):
    """Where the other settings come from; read first, from the environment and `.env`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_file=ENV_FILE)

    secrets_dir: Path | None = Field(default=None, description="a folder with one file per secret setting")


def load() -> Settings:
    """Read the settings once, at an edge (the CLI, a server or worker start).

    Raises:
        ConfigError: names each wrong `LOTLENS_*` variable and its rule, never its value.
    """
    try:
        secrets_dir = _Locations().secrets_dir
        if secrets_dir is not None and not secrets_dir.is_dir():
            raise ConfigError([(ENV_PREFIX + "SECRETS_DIR", "not a directory")])
        return Settings(_secrets_dir=secrets_dir)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None  # `from None`: the cause quotes the values
    except SettingsError as exc:
        raise ConfigError([_unparsed(exc)]) from None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    found = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        field, *inner = e["loc"] or ("?",)
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner)
        rule = e["msg"].removeprefix("Value error, ")
        found.append((ENV_PREFIX + str(field).upper(), f"{where.lstrip('.')}: {rule}" if where else rule))
    return found


_SOURCES = {
    "EnvSettingsSource": "",
    "DotEnvSettingsSource": f" (in {ENV_FILE})",
    "SecretsSettingsSource": " (in the secrets folder)",
}


def _unparsed(exc: SettingsError) -> tuple[str, str]:
    """A value pydantic-settings could not decode (a list or dict that is not JSON)."""
    m = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
    if m is None:
        return (ENV_PREFIX + "*", "a setting could not be read")
    return (ENV_PREFIX + m[1].upper(), "not valid JSON" + _SOURCES.get(m[2], ""))
