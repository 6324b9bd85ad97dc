"""One typed settings object, read from `LOTLENS_*` environment variables at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiKey(BaseModel):
    """An API key. Roles: `scraper`, `staff`, `admin`, `advertiser:<id>`."""

    name: str
    key: str = Field(min_length=16, repr=False)
    role: str = Field(pattern=r"^(scraper|staff|admin|advertiser:.+)$")


class Settings(BaseSettings):
    """lotlens settings. Built once by the CLI (later the API) and passed down."""

    model_config = SettingsConfigDict(env_prefix="LOTLENS_", extra="ignore")

    data_dir: Path = Field(default=Path("lotlens-data"), description="local data folder")
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
    model_poll_seconds: float = Field(default=10.0, gt=0, description="how often serve checks for a new champion")
    keep_images: bool = Field(default=True, description="keep classified images' bytes for datasets")
    dataset_min_side: int = Field(default=64, ge=1, description="datasets drop images smaller than this")
    dataset_test_size: float = Field(default=0.3, gt=0, lt=1, description="share of advertisers held out")
    verify_fraction: float = Field(
        default=0.02, ge=0, le=1, description="share of header-key hits fetched anyway to check the CDN"
    )
    batch_size: int = Field(default=16, gt=0, description="images per inference batch")
    threads: int = Field(default=0, ge=0, description="onnxruntime/OpenCV threads; 0 = all cores")
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs review-page session cookies; None = derived from the API keys (set it to rotate sessions)",
    )
    session_hours: float = Field(default=12.0, gt=0, description="review pages: how long a sign-in lasts")
    page_size: int = Field(default=100, gt=0, le=1000, description="review pages: images per inventory page")
    low_confidence: float = Field(
        default=0.5, gt=0, lt=1, description="review pages: a model score under this counts as low confidence"
    )

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
