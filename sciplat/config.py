"""The one configuration schema: ``sciplat.yaml``.

`sciplat up` renders JupyterHub, proxy, API-service and dask-gateway settings from it; the Helm
chart's ``values.yaml`` maps onto the same models. Every field has a description: it is the
configuration reference (``sciplat config schema`` prints the JSON Schema).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CatalogConfig",
    "CullConfig",
    "GatewayConfig",
    "GroupConfig",
    "HubConfig",
    "ImageConfig",
    "MyDBConfig",
    "NotebooksConfig",
    "OIDCConfig",
    "PortsConfig",
    "QuotaConfig",
    "Settings",
    "SizeConfig",
    "load_settings",
    "parse_bytes",
]

#: Every scope a group can be granted. ``access:services!service=dask-gateway`` is JupyterHub's
#: own; the ``custom:`` ones are registered with the hub as custom scopes.
CUSTOM_SCOPES: dict[str, str] = {
    "custom:tap:read": "Query the catalogs through TAP and cone search.",
    "custom:image:read": "Search and read images (SIAv2, SODA, DataLink, HiPS).",
    "custom:files:write": "Read and write the user's and their groups' workspaces.",
    "custom:portal:use": "Use the portal.",
    "custom:notebooks:exec": "Run prepared and templated notebooks.",
    "custom:mydb:write": "Create, drop and share the user's own tables (MyDB).",
}
GATEWAY_SCOPE = "access:services!service=dask-gateway"
KNOWN_SCOPES = frozenset([*CUSTOM_SCOPES, GATEWAY_SCOPE])

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_UNITS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "KI": 2**10,
    "MI": 2**20,
    "GI": 2**30,
    "TI": 2**40,
}


def parse_bytes(value: int | str) -> int:
    """Turn ``"4G"``, ``"512Mi"`` or ``1024`` into a number of bytes."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"not a byte size: {value!r} (use e.g. 4G, 512Mi, 1024)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper() if unit else None])


ByteSize = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SizeConfig(_Model):
    """A lab size offered on the spawn form."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$", description="Identifier, e.g. 'small'.")
    display_name: str = Field("", description="Label on the spawn form.")
    cpu: float = Field(gt=0, description="CPU cores (a limit, not a reservation).")
    memory: ByteSize = Field(description="Memory limit in bytes ('4G' accepted).")

    @field_validator("memory", mode="before")
    @classmethod
    def _bytes(cls, value: int | str) -> int:
        return parse_bytes(value)

    @model_validator(mode="after")
    def _label(self) -> SizeConfig:
        if not self.display_name:
            self.display_name = (
                f"{self.name.title()} ({self.cpu:g} CPU, {self.memory / 2**30:g} GiB)"
            )
        return self


ImageTag = Literal["recommended", "release", "weekly", "daily", "experimental"]


class ImageConfig(_Model):
    """A lab image: a Python environment built from a spec in ``images/``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Identifier, e.g. 'r1_0_0'.")
    tag: ImageTag = Field("release", description="Tag class, as on the RSP's image menu.")
    display_name: str = Field("", description="Label on the spawn form.")
    env: Path | None = Field(
        None,
        description="Prefix of the environment (a venv). None means the one sciplat runs in.",
    )
    container_image: str = Field("", description="Container image for the Kubernetes backend.")


class QuotaConfig(_Model):
    """Per-group limits; a user gets the largest of their groups' values."""

    max_size: str | None = Field(None, description="Largest lab size; None means any size.")
    dask_cores: float = Field(4, ge=0, description="Cores across the user's dask clusters.")
    dask_memory: ByteSize = Field(8 * 2**30, description="Memory across the user's clusters.")
    dask_workers: int = Field(8, ge=0, description="Workers in one cluster.")
    tap_concurrent: int = Field(12, ge=0, description="Concurrent TAP queries (RSP: 12).")
    disk: ByteSize = Field(10 * 2**30, description="Home directory disk quota.")
    notebooks_concurrent: int = Field(2, ge=0, description="Concurrent notebook executions.")
    named_servers: int = Field(2, ge=0, description="Named servers beyond the default one.")
    mydb_rows: int = Field(
        10_000_000, ge=0, description="Rows across the user's (or group's) MyDB tables."
    )
    mydb_bytes: ByteSize = Field(
        2 * 2**30, description="Stored bytes across the user's (or group's) MyDB tables ('2G')."
    )

    @field_validator("dask_memory", "disk", "mydb_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: int | str) -> int:
        return parse_bytes(value)


class GroupConfig(_Model):
    """A group: data rights (scopes) and quotas, granted to its members through a hub role."""

    description: str = ""
    scopes: list[str] = Field(default_factory=list, description="Scopes members hold.")
    quotas: QuotaConfig = Field(default_factory=QuotaConfig)

    @field_validator("scopes")
    @classmethod
    def _known(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - KNOWN_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {sorted(KNOWN_SCOPES)}")
        return scopes


class OIDCConfig(_Model):
    """Production identity: oauthenticator's GenericOAuthenticator against an OIDC provider."""

    issuer: str = Field(description="Issuer URL; endpoints are read from its discovery document.")
    client_id: str
    client_secret: str = Field("", description="Or set SCIPLAT_OIDC_CLIENT_SECRET.")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    admin_groups: list[str] = Field(default_factory=list)
    allowed_groups: list[str] = Field(
        default_factory=list,
        description="Only members of these provider groups may log in; empty: everyone the "
        "provider authenticates.",
    )
    authorize_url: str = Field("", description="Override of the discovered endpoint.")
    token_url: str = Field("", description="Override of the discovered endpoint.")
    userdata_url: str = Field("", description="Override of the discovered endpoint.")


class CullConfig(_Model):
    """Idle culling of labs (jupyterhub-idle-culler)."""

    enabled: bool = True
    timeout: int = Field(3600, ge=1, description="Seconds of inactivity before a lab stops.")
    every: int = Field(300, ge=1, description="Seconds between checks.")
    max_age: int = Field(0, ge=0, description="Stop labs older than this; 0 means never.")


class PortsConfig(_Model):
    """Loopback ports of the embedded default's internal servers."""

    proxy_api: int = 8001
    hub: int = 8081
    api: int = 8090
    portal: int = 8091
    gateway: int = 8092
    gateway_tcp: int = 8786


class HubConfig(_Model):
    """JupyterHub and its proxy."""

    ip: str = Field("127.0.0.1", description="Address the proxy listens on.")
    port: int = Field(8000, description="Public port of the proxy.")
    public_url: str = Field("", description="URL users reach; default http://ip:port.")
    authenticator: Literal["native", "oidc"] = "native"
    oidc: OIDCConfig | None = None
    admin_users: list[str] = Field(default_factory=lambda: ["admin"])
    open_signup: bool = Field(False, description="False: an admin approves every sign-up.")
    minimum_password_length: int = 10
    default_groups: list[str] = Field(
        default_factory=lambda: ["users"], description="Groups every approved user joins."
    )
    cull: CullConfig = Field(default_factory=CullConfig)
    start_timeout: int = Field(60, description="Seconds a lab may take to start.")

    @model_validator(mode="after")
    def _oidc(self) -> HubConfig:
        if self.authenticator == "oidc" and self.oidc is None:
            raise ValueError("hub.authenticator is 'oidc' but hub.oidc is not set")
        return self


class GatewayConfig(_Model):
    """Batch compute: dask-gateway clusters (per-user limits come from the groups' quotas)."""

    backend: Literal["auto", "local", "unsafe-local"] = Field(
        "auto",
        description="'local': clusters run as the user's Unix account (needs root); "
        "'unsafe-local': as sciplat's own uid (single-uid development only); 'auto': local when "
        "run as root, unsafe-local otherwise.",
    )
    images: list[str] = Field(
        default_factory=list,
        description="Names of the images clusters may run; empty means every lab image.",
    )
    worker_cores: int = Field(1, ge=1, description="Default cores of a worker.")
    worker_memory: ByteSize = Field(2 * 2**30, description="Default memory of a worker ('2G').")
    scheduler_memory: ByteSize = Field(2**30, description="Memory of a scheduler ('1G').")
    idle_timeout: int = Field(
        1800, ge=0, description="Seconds without work before a cluster stops; 0 means never."
    )
    max_idle_timeout: int = Field(
        86400, ge=0, description="Largest idle_timeout a user may ask for; 0 means no limit."
    )
    max_clusters_per_user: int = Field(2, ge=1, description="Running clusters per user.")
    heartbeat_period: int = Field(
        10, ge=1, description="Seconds between a cluster's heartbeats to the gateway."
    )
    start_timeout: int = Field(60, ge=5, description="Seconds a scheduler or worker may take.")

    @field_validator("worker_memory", "scheduler_memory", mode="before")
    @classmethod
    def _bytes(cls, value: int | str) -> int:
        return parse_bytes(value)


class CatalogConfig(_Model):
    """The catalog database behind TAP."""

    backend: Literal["duckdb", "postgres"] = "duckdb"
    url: str = Field("", description="postgresql://... for the postgres backend.")
    max_rows: int = Field(10_000_000, ge=1, description="Hard limit on MAXREC.")
    default_maxrec: int = Field(100_000, ge=0)
    query_timeout: int = Field(600, ge=1, description="Seconds before a query is cancelled.")


class JobsConfig(_Model):
    """The UWS job store of the API service (TAP and SODA async jobs)."""

    url: str = Field(
        "",
        description="postgresql://... of a role that may create tables: jobs are kept in "
        "PostgreSQL, shared by every API replica. Empty: PostgreSQL at catalog.url when the "
        "catalog backend is postgres and that role may create tables, else SQLite files under "
        "the services' state directory.",
    )
    heartbeat: float = Field(
        10.0,
        gt=0,
        description="Seconds between a service process's heartbeats; a job whose process has "
        "missed three ends in ERROR (the process died while running it).",
    )


class MyDBConfig(_Model):
    """User tables (MyDB): per-user ``user_<name>`` and per-group ``group_<name>`` schemas."""

    max_upload_bytes: ByteSize = Field(
        512 * 2**20, description="Largest file accepted by a table upload ('512M')."
    )
    writer_url: str = Field(
        "",
        description="postgresql://... of a role that may create schemas and tables, used to "
        "write user tables on the postgres backend; empty means catalog.url.",
    )
    reader_role: str = Field(
        "",
        description="PostgreSQL role the TAP service reads as, granted SELECT on user tables; "
        "empty means the user of catalog.url.",
    )

    @field_validator("max_upload_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: int | str) -> int:
        return parse_bytes(value)


class NotebooksConfig(_Model):
    """Prepared and templated notebook execution (the ``notebooks`` API service)."""

    default_timeout: int = Field(600, ge=1, description="Seconds a run may take by default.")
    max_timeout: int = Field(3600, ge=1, description="Largest timeout a run may ask for.")
    max_concurrent: int = Field(
        2, ge=1, description="Runs executing at once on this host; more wait in a queue."
    )
    template_dirs: list[Path] = Field(
        default_factory=list,
        description="Extra directories of templates (notebook + sidecar YAML) besides the "
        "shipped notebooks/templates and notebooks/commissioning.",
    )
    run_as_user: bool = Field(
        True,
        description="When the service runs as root, execute each notebook as the requesting "
        "user's Unix account; False runs every notebook as the service's own uid.",
    )


def _default_data_dir() -> Path:
    if env := os.environ.get("SCIPLAT_DATA_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/sciplat")
    return Path.home() / ".local/share/sciplat/data"


def _default_groups() -> dict[str, GroupConfig]:
    all_scopes = sorted(KNOWN_SCOPES)
    return {
        "users": GroupConfig(
            description="Every approved user.",
            scopes=all_scopes,
            quotas=QuotaConfig(max_size="medium"),
        ),
        "staff": GroupConfig(
            description="Commissioning and operations staff.",
            scopes=all_scopes,
            quotas=QuotaConfig(
                dask_cores=8,
                dask_memory=16 * 2**30,
                dask_workers=16,
                tap_concurrent=24,
                disk=100 * 2**30,
            ),
        ),
    }


def _default_sizes() -> list[SizeConfig]:
    return [
        SizeConfig(name="small", cpu=1, memory=4 * 2**30),
        SizeConfig(name="medium", cpu=2, memory=8 * 2**30),
        SizeConfig(name="large", cpu=4, memory=16 * 2**30),
    ]


def _default_images() -> list[ImageConfig]:
    return [
        ImageConfig(
            name="recommended",
            tag="recommended",
            display_name="Recommended (sciplat's own environment)",
        )
    ]


class Settings(_Model):
    """Top level of ``sciplat.yaml``."""

    data_dir: Path = Field(default_factory=_default_data_dir, description="Root of all state.")
    dataset: str = Field("small", description="Data preview size `sciplat up` builds if absent.")
    hub: HubConfig = Field(default_factory=HubConfig)
    ports: PortsConfig = Field(default_factory=PortsConfig)
    images: list[ImageConfig] = Field(default_factory=_default_images, min_length=1)
    sizes: list[SizeConfig] = Field(default_factory=_default_sizes, min_length=1)
    groups: dict[str, GroupConfig] = Field(default_factory=_default_groups)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    notebooks: NotebooksConfig = Field(default_factory=NotebooksConfig)
    mydb: MyDBConfig = Field(default_factory=MyDBConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        sizes = {s.name for s in self.sizes}
        for name, group in self.groups.items():
            if group.quotas.max_size and group.quotas.max_size not in sizes:
                raise ValueError(
                    f"groups.{name}.quotas.max_size {group.quotas.max_size!r} is not a size "
                    f"(sizes: {sorted(sizes)})"
                )
        for name in self.hub.default_groups:
            if name not in self.groups:
                raise ValueError(f"hub.default_groups names unknown group {name!r}")
        if len({i.name for i in self.images}) != len(self.images):
            raise ValueError("image names must be unique")
        if len(sizes) != len(self.sizes):
            raise ValueError("size names must be unique")
        if not any(i.tag == "recommended" for i in self.images):
            raise ValueError("at least one image must have tag 'recommended'")
        return self

    # Derived locations (one place, so every component agrees).
    @property
    def public_url(self) -> str:
        return (self.hub.public_url or f"http://{self.hub.ip}:{self.hub.port}").rstrip("/")

    @property
    def hub_state_dir(self) -> Path:
        return self.data_dir / "hub"

    @property
    def homes_dir(self) -> Path:
        return self.data_dir / "home"

    @property
    def groups_dir(self) -> Path:
        return self.data_dir / "groups"

    @property
    def dataset_dir(self) -> Path:
        """The data preview: ``butler/``, ``catalog/``, ``hips/``."""
        return self.data_dir / "dataset"

    @property
    def services_state_dir(self) -> Path:
        """Job store and results of the API service."""
        return self.data_dir / "api"

    @property
    def run_dir(self) -> Path:
        """Pid files, logs and generated configuration of running processes."""
        return self.data_dir / "run"

    def size(self, name: str) -> SizeConfig:
        for size in self.sizes:
            if size.name == name:
                return size
        raise KeyError(name)

    def image(self, name: str) -> ImageConfig:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: object) -> Settings:
    """Read ``sciplat.yaml`` (or defaults when *path* is None) and apply top-level overrides."""
    data: dict[str, object] = {}
    if path is not None:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(data)
