"""User tables (MyDB): ``user_<name>`` and ``group_<name>`` schemas queried through TAP.

The ``mydb`` area of the API service (``/services/api/mydb``) creates, lists, describes, drops
and shares tables; the TAP service sees each caller's tables through :mod:`.tap`.
"""

from __future__ import annotations

import logging

from sciplat.config import Settings
from sciplat.services.mydb.handlers import build_router
from sciplat.services.mydb.registry import Registry
from sciplat.services.mydb.service import MyDBService
from sciplat.services.mydb.storage import ParquetStore, PostgresStore, TableStore
from sciplat.services.plugin import AppContext, ServicePlugin

__all__ = ["open_mydb", "plugin"]

log = logging.getLogger("sciplat.services.mydb")


def _reader_role(settings: Settings) -> str:
    if settings.mydb.reader_role:
        return settings.mydb.reader_role
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(settings.catalog.url).get("user") or "")


def open_mydb(settings: Settings) -> MyDBService:
    """The MyDB service for the configured catalog backend."""
    root = settings.services_state_dir / "mydb"
    store: TableStore
    if settings.catalog.backend == "postgres":
        store = PostgresStore(
            settings.mydb.writer_url or settings.catalog.url, _reader_role(settings)
        )
    else:
        store = ParquetStore(root / "tables")
    registry = Registry(root / f"registry-{settings.catalog.backend}.sqlite3")
    return MyDBService(settings, registry, store)


async def startup(context: AppContext) -> None:
    from sciplat.services.mydb.tap import UserTables

    try:
        service = open_mydb(context.settings)
    except Exception:  # the rest of the API service must still start
        log.exception("MyDB could not start; its routes answer 503")
        return
    context.state["mydb"] = service
    tap = context.state.get("tap")
    if tap is not None and tap.service is not None:
        tap.service.user_tables = UserTables(service)
    else:
        log.warning("MyDB: no TAP service; tables can be managed but not queried")


async def shutdown(context: AppContext) -> None:
    service: MyDBService | None = context.state.pop("mydb", None)
    if service is not None:
        service.registry.close()
        service.store.close()


plugin = ServicePlugin(
    name="mydb",
    router_factory=build_router,
    error_format="json",
    startup=startup,
    shutdown=shutdown,
)
