"""Settings: what every accesslog pipeline (batch, follow, streaming) is told, in one frozen object.

Format (how lines are read), privacy (keys, IP mode, GeoIP, secret parameters, user paths), retention
and the warehouse. The CLI, `python -m pipelines.<name>` and library callers all build a `Settings`; it is
checked once, here, when it is made. The job-specific knobs (inputs, windows, intervals) live in
each pipeline's own config beside it. No Apache Beam here: the CLI reads the defaults below to
document its flags.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from schemas import GEO_DETAILS, IP_MODES
from schemas.errors import SettingError
from storage.keystore import PERIODS
from storage.retention import parse_now


@dataclass(frozen=True)
class Settings:
    warehouse: str | None = None   # a folder or s3://bucket/prefix; needed by every job that writes
    # -- format: how lines are read
    log_format: str = "combined"
    nginx_conf: str | None = None
    log_format_name: str | None = None
    field_map: str | None = None
    timezone: str = "UTC"
    trusted_proxies: str | None = None
    strict: bool = False           # reject lines with fields after the format, or cut off inside a quoted field
    # -- privacy
    keys: str | None = None
    key_period: str | None = None
    ip_mode: str = "hmac"
    geoip_db: tuple[str, ...] = ()
    geo_detail: str = "country"
    secret_params: str | None = None
    user_paths: str | None = None   # '/users/,/u/': the path segment after each is a user name
    # -- retention
    retention_days: int = 90
    now: str | None = None

    def __post_init__(self):
        if self.geoip_db is None or isinstance(self.geoip_db, (list, str)):
            geoip = (self.geoip_db,) if isinstance(self.geoip_db, str) else tuple(self.geoip_db or ())
            object.__setattr__(self, "geoip_db", geoip)
        validate(self)

    @classmethod
    def from_namespace(cls, ns, **given) -> "Settings":
        """From parsed flags (an argparse namespace or a Beam options view): every field the
        namespace has a value for; absent or None ones keep their defaults."""
        values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)
                  if f.name not in given and getattr(ns, f.name, None) is not None}
        return cls(**values, **given)

    @property
    def format_spec(self) -> str:
        """The log format asked for: `log_format`, or the `log_format_name` read from `nginx_conf`."""
        return self.log_format_name if self.nginx_conf and self.log_format_name else self.log_format

    def require_warehouse(self) -> str:
        """The warehouse, which every job that writes needs."""
        if not self.warehouse:
            raise SettingError("no warehouse: pass {} (a folder, created if missing)", "warehouse")
        return self.warehouse

    def now_at(self) -> datetime:
        """The end of the retention window: `now`, or the current time when it is not fixed."""
        return parse_now(self.now)


def default(name: str):
    """The default of a Settings field (for the CLI's flags and help)."""
    return Settings.__dataclass_fields__[name].default


def validate(settings: Settings) -> None:
    """Raise SettingError for a setting that cannot work. (The log format, zone and trusted proxies
    are checked where they are compiled, by pipelines.prepare.resolve_formats.)"""
    if settings.retention_days < 0:
        raise SettingError("{} must be 0 or more", "retention_days")
    if settings.ip_mode not in IP_MODES:
        raise SettingError("unknown {} {mode!r}: use one of {modes}", "ip_mode", mode=settings.ip_mode,
                           modes=", ".join(IP_MODES))
    if settings.geo_detail not in GEO_DETAILS:
        raise SettingError("{} must be one of {choices}, not {detail!r}", "geo_detail",
                           choices=", ".join(GEO_DETAILS), detail=settings.geo_detail)
    if settings.key_period is not None and settings.key_period not in PERIODS:
        raise SettingError("unknown {} {period!r}: use one of {periods}", "key_period",
                           period=settings.key_period, periods=", ".join(PERIODS))
    settings.now_at()   # a bad --now fails here, before anything is read
