"""Every setting of closedloop in one place: the `CLOSEDLOOP_*` environment, then flags on top.

`load_settings()` reads the environment (and the flags a command was given), checks every
value once and answers a `Settings`, or raises `SettingsError`: one line naming the variable
(or flag) and what it accepts, never a traceback. The rest of the product takes what it needs
from a `Settings` (or the policies it builds) as parameters; only this module reads
`CLOSEDLOOP_*` variables.

    settings = load_settings(flags={"port": 9000})
    settings.loop_policy(), settings.quality_policy(), settings.network_config(auto_default=True)
    for row in describe(settings): print(row.variable, row.value, row.source)
"""

from __future__ import annotations

import json
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping
from urllib.parse import urlparse

from pydantic import BeforeValidator, Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from closedloop.domain.network import DispatchPolicy, parse_offset
from closedloop.domain.parts import PartsRules
from closedloop.domain.permit import PermitRules, PermitRulesError
from closedloop.domain.policy import CAUSES, HOUR, INTENTS, MINUTE, LoopPolicy, parse_duration, parse_routes
from closedloop.domain.quality import QualityPolicy, parse_penalties, parse_prices

PREFIX = "CLOSEDLOOP_"
DAY = 24 * HOUR
SECRET_SHOWN = "********"
UNSET_SHOWN = "(unset)"
Source = Literal["default", "environment", "flag"]

DEFAULT_DATABASE_URL = "sqlite:///data/closedloop.db"
DEFAULT_ROUTE_CAUSES = "design=design,manufacturing=manufacturing,installation=service,transport=service"
DEFAULT_ROUTE_INTENTS = "suggestion=design,purchase_interest=sales"
DEFAULT_PENALTIES = "promise_broken=5+5,not_fixed_first_visit=5+5,repeat_repair=5+5,attitude=5+5"
DEFAULT_PRICES = "repair=50,install=40,maintenance=30,guidance=10"

# False while load_settings() validates what it read itself: pydantic-settings would read
# os.environ again (a BaseSettings reads it whenever it is made, model_validate included)
_READ_ENVIRONMENT: ContextVar[bool] = ContextVar("closedloop_settings_read_environment", default=True)

# An empty value means "unset" (the default applies), except for these, where it means "none".
EMPTY_MEANS_NONE = frozenset({"route_causes", "route_intents", "penalties"})


class SettingsError(ValueError):
    """A setting cannot be used. str() is one line: the variable (or flag), the value and
    what it accepts, in English and Chinese."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.name = name


def variable(name: str) -> str:
    """The environment variable of a field: database_url -> CLOSEDLOOP_DATABASE_URL."""
    return PREFIX + name.upper()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --- value checks: each raises ValueError with what the setting accepts ------------------------------

_SWITCH = {"1": True, "true": True, "on": True, "yes": True, "0": False, "false": False, "off": False, "no": False}


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _switch(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str) and value.strip().lower() in _SWITCH:
        return _SWITCH[value.strip().lower()]
    raise ValueError(f"{_shown(value)} is not on or off (1/0, true/false, on/off, yes/no) "
                     f"/ 不是开关值 (可用 1/0、true/false、on/off、yes/no)")


def _duration(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value  # already milliseconds
    try:
        ms = parse_duration(str(value))
    except ValueError:
        raise ValueError(f"{_shown(value)} is not a duration such as 30m, 48h or 30d "
                         f"/ 不是有效的时长 (如 30m、48h、30d)") from None
    return ms


def _whole(minimum: int, maximum: int | None = None) -> Any:
    def check(value: Any) -> Any:
        if value is None:
            return None
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None or number < minimum or (maximum is not None and number > maximum):
            span = f"{minimum}-{maximum}" if maximum is not None else f"at least {minimum}"
            span_zh = f"{minimum}-{maximum}" if maximum is not None else f"不小于 {minimum}"
            raise ValueError(f"{_shown(value)} is not a whole number ({span}) / 不是有效的整数 ({span_zh})")
        return number
    return check


def _port(value: Any) -> Any:
    try:
        return _whole(1, 65535)(value)
    except ValueError:
        raise ValueError(f"{_shown(value)} is not a port number (1-65535) / 不是有效的端口号 (1-65535)") from None


def _number(low: float, high: float | None = None, low_open: bool = False) -> Any:
    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        ok = number is not None and number == number and (number > low if low_open else number >= low) \
            and (high is None or number <= high)
        if not ok:
            span = f"from {low:g} to {high:g}" if high is not None else (f"above {low:g}" if low_open else f"of at least {low:g}")
            span_zh = f"{low:g} 到 {high:g}" if high is not None else (f"大于 {low:g}" if low_open else f"不小于 {low:g}")
            raise ValueError(f"{_shown(value)} is not a number {span} / 不是有效的数值 ({span_zh})")
        return number
    return check


def _database_url(value: Any) -> Any:
    text = str(value).strip()
    parsed = urlparse(text)
    ok = False
    if parsed.scheme == "sqlite":
        ok = (text.startswith("sqlite:///") and len(text) > len("sqlite:///")) or parsed.netloc == ":memory:"
    elif parsed.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        ok = text.startswith(parsed.scheme + "://") and bool(parsed.path.lstrip("/"))
    if not ok:
        raise ValueError(f"{_shown(value)} is not a database URL: use sqlite:///path/to/file.db or "
                         f"postgresql://user@host:port/db / 不是可用的数据库地址")
    return text


def _choice(*choices: str, upper: bool = False) -> Any:
    def check(value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        text = text.upper() if upper else text.lower()
        if text not in choices:
            raise ValueError(f"{_shown(value)} is not one of {', '.join(choices)} / 须为 {'、'.join(choices)} 之一")
        return text
    return check


def _parsed_by(parse: Any, what: str, what_zh: str) -> Any:
    def check(value: Any) -> Any:
        try:
            parse(str(value))
        except ValueError as exc:
            raise ValueError(f"{_shown(value)} is not {what} ({exc}) / 不是有效的{what_zh}") from None
        return str(value)
    return check


def _currency(value: Any) -> Any:
    text = str(value).strip()
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise ValueError(f"{_shown(value)} is not an ISO 4217 code such as CNY / 不是 ISO 4217 货币代码 (如 CNY)")
    return text


def _offset(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return parse_offset(str(value))
    except ValueError:
        raise ValueError(f"{_shown(value)} is not a UTC offset such as +08:00 or UTC (at most ±14:00) "
                         f"/ 不是有效的时区偏移 (如 +08:00)") from None


def _brokers(value: Any) -> Any:
    if value is None:
        return None
    servers = [s.strip() for s in str(value).split(",") if s.strip()]
    for s in servers:
        host, _, port = s.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{_shown(value)} is not host:port[,host:port] (e.g. 127.0.0.1:9092) "
                             f"/ 不是有效的 Kafka 地址 (host:port)")
    return ",".join(servers) or None


def permit_rules_text(text: str) -> dict[str, Any]:
    """CLOSEDLOOP_PERMIT_RULES: a JSON object, or the path of a JSON file holding one."""
    text = text.strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise PermitRulesError(f"no JSON object and no file {text!r}")
        text = path.read_text(encoding="utf-8")
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PermitRulesError(f"not valid JSON: {exc}") from None
    PermitRules.from_mapping(overrides)  # raises PermitRulesError naming the rule
    return overrides


def _permit_rules(value: Any) -> Any:
    if value is None:
        return None
    try:
        permit_rules_text(str(value))
    except PermitRulesError as exc:
        raise ValueError(f"{_shown(value)}: {exc} (a JSON object or a JSON file of permit rules) "
                         f"/ 不是有效的许可规则") from None
    return str(value)


Switch = Annotated[bool, BeforeValidator(_switch)]
OptionalSwitch = Annotated[bool | None, BeforeValidator(_switch)]
Duration = Annotated[int, BeforeValidator(_duration)]


Count = Annotated[int, BeforeValidator(_whole(0))]
Positive = Annotated[int, BeforeValidator(_whole(1))]


# --- the settings -----------------------------------------------------------------------------------

class Settings(BaseSettings):
    """Every CLOSEDLOOP_* variable, once: its type, its default and what it means."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid", frozen=True, validate_default=False)

    # where things live and listen
    database_url: Annotated[str, BeforeValidator(_database_url)] = Field(
        DEFAULT_DATABASE_URL, description="where the log and views live: sqlite:///file.db or postgresql://user@host:port/db")
    host: str = Field("127.0.0.1", description="where serve and demo listen")
    port: Annotated[int, BeforeValidator(_port)] = Field(8000, description="the port serve and demo listen on")
    sqlite_synchronous: Annotated[str, BeforeValidator(_choice("OFF", "NORMAL", "FULL", "EXTRA", upper=True))] = Field(
        "FULL", description="SQLite durability; FULL keeps an acknowledged event through a power cut")

    # the loop's deadlines and routes
    record_within: Duration = Field(30 * MINUTE, description="a call asking for service has its case registered")
    handle_within: Duration = Field(48 * HOUR, description="a case is completed, cancelled or guided by phone")
    appointment_grace: Duration = Field(2 * HOUR, description="with an appointment, handled by it plus this")
    follow_up_within: Duration = Field(2 * HOUR, description="a phone guidance gets its follow-up call")
    review_within: Duration = Field(24 * HOUR, description="a completed case gets a callback reaching the customer")
    feed_back_within: Duration = Field(72 * HOUR, description="a design/manufacturing/installation/transport cause "
                                                              "is acknowledged by its department")
    route_causes: Annotated[str, BeforeValidator(_parsed_by(lambda t: parse_routes(t, CAUSES), "cause=department routes",
                                                             "原因=部门 路由"))] = Field(
        DEFAULT_ROUTE_CAUSES, description="which completion cause is fed back to which department")
    route_intents: Annotated[str, BeforeValidator(_parsed_by(lambda t: parse_routes(t, INTENTS), "intent=department routes",
                                                              "意图=部门 路由"))] = Field(
        DEFAULT_ROUTE_INTENTS, description="which call intent is fed back to which department")

    # what the engine decides by itself
    reactors: Switch = Field(True, description="off: this process decides nothing (a read replica)")
    auto_routing: Switch = Field(True, description="the engine routes feedback to departments")
    auto_penalties: Switch = Field(True, description="the engine charges complaint penalties")
    leak_alerts: Switch = Field(True, description="the engine decides loop.leaked alerts")
    auto_dispatch: OptionalSwitch = Field(None, description="the engine dispatches cases; unset: on for serve and "
                                                            "demo, off otherwise")

    # money
    penalties: Annotated[str, BeforeValidator(_parsed_by(parse_penalties, "a penalty list", "罚款规则"))] = Field(
        DEFAULT_PENALTIES, description="complaint category = employee's share + manager's share; empty: none")
    prices: Annotated[str, BeforeValidator(_parsed_by(parse_prices, "a price list", "价格表"))] = Field(
        DEFAULT_PRICES, description="what an outlet is paid per settled job, by tier and date")
    currency: Annotated[str, BeforeValidator(_currency)] = Field("CNY", description="currency of prices and penalties")

    # dispatch, the permit and parts
    accept_within: Duration = Field(30 * MINUTE, description="a dispatch without accept_by must be accepted this soon")
    escalate_after: Duration = Field(30 * MINUTE, description="not accepted this long after its deadline: escalated")
    max_redispatches: Count = Field(2, description="escalations to another outlet before the service "
                                                             "center takes the case")
    warning_share: Annotated[float, BeforeValidator(_number(0, 1))] = Field(
        0.5, description="share of a normal technician's jobs one on a warning permit gets")
    repeat_within: Duration = Field(30 * DAY, description="the same product back this soon is a repeat repair")
    utc_offset: Annotated[int, BeforeValidator(_offset)] = Field(0, description="the network's local time, e.g. +08:00")
    backfill_lag: Duration = Field(HOUR, description="events recorded this long after they happened are history: "
                                                     "deadlines follow the stream's time")
    permit_rules: Annotated[str | None, BeforeValidator(_permit_rules)] = Field(
        None, description="a JSON object or JSON file overriding the permit's points and thresholds")
    auto_approve_parts: Switch = Field(True, description="the engine decides part requests by rule")
    part_max_quantity: Positive = Field(10, description="a part request for more is denied")
    part_auto_quantity: Positive = Field(3, description="a part request for more is held for a person")
    part_first_level_fallback: Switch = Field(True, description="the first-level warehouse ships what the "
                                                                "second-level one lacks")

    # the API
    auth: Switch = Field(True, description="off lets every caller in as admin (a closed network only)")
    rate_limit: Annotated[float | None, BeforeValidator(_number(0, low_open=True))] = Field(
        None, description="events per second for producer keys without a rate of their own")
    max_body_mb: Annotated[float, BeforeValidator(_number(0, low_open=True))] = Field(
        64.0, description="larger request bodies are refused with 413")
    max_batch_events: Positive = Field(50000, description="larger batches are refused with 413")
    checkpoint_every: Duration = Field(HOUR, description="how often serve checkpoints the hash chain; 0: never")
    follow: Annotated[str, BeforeValidator(_choice("background", "inline"))] = Field(
        "inline", description="how serve keeps views and reactors: inline (a request answers once every view is "
        "current) or background (once its events are durable; not yet the default: it falls behind under load, and "
        "some reactors then decide differently)")
    min_position_wait: Duration = Field(5000, description="how long a view read with min_position waits for "
                                        "the views to reach it before 503")
    metrics_key: SecretStr | None = Field(None, description="when set, /metrics needs it as a bearer token")
    metrics_source_depth: Positive = Field(2, description="path segments of a source kept in metric labels")
    metrics_max_sources: Positive = Field(500, description="distinct source labels kept before folding")

    # logs and the command line
    log_format: Annotated[str | None, BeforeValidator(_choice("json", "text"))] = Field(
        None, description="log lines as json or text; unset: json for serve, text for the demo")
    log_level: Annotated[str | None, BeforeValidator(_choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True))] = Field(
        None, description="DEBUG, INFO, WARNING or ERROR; unset: INFO for serve, WARNING for the demo")
    no_progress: Switch = Field(False, description="on hides progress bars")
    debug: Switch = Field(False, description="on shows the full traceback of an error")
    replay_batch: Annotated[int, BeforeValidator(_whole(1000))] = Field(
        100000, description="facts a rebuild worker folds per transaction")
    replay_workers: Annotated[int | None, BeforeValidator(_whole(1))] = Field(
        None, description="processes folding views at once; unset: one per core")

    # Kafka
    kafka_bootstrap: Annotated[str | None, BeforeValidator(_brokers)] = Field(
        None, description="Kafka brokers host:port[,host:port]; set, serve publishes too")
    kafka_alerts_topic: str = Field("closedloop.alerts", description="where loop alerts are published")
    kafka_feedback_prefix: str = Field("closedloop.feedback.", description="prefix of each department's feedback topic")
    kafka_partitions: Positive = Field(3, description="partitions of the topics publish creates")
    kafka_group: str | None = Field(
        None, description="consume joins this Kafka consumer group, which shares the partitions out")
    kafka_security_protocol: str | None = Field(None, description="Kafka security protocol, e.g. SASL_SSL")
    kafka_sasl_mechanism: str | None = Field(None, description="Kafka SASL mechanism, e.g. SCRAM-SHA-512")
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL user")
    kafka_sasl_password: SecretStr | None = Field(None, description="Kafka SASL password")
    kafka_ssl_cafile: str | None = Field(None, description="CA file for the Kafka brokers' certificates")

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `Settings()` reads the environment (no .env file, no secrets directory);
        # load_settings() and default_settings() hand over exactly what they mean
        return (init_settings, env_settings) if _READ_ENVIRONMENT.get() else (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v == "" and k not in EMPTY_MEANS_NONE)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.part_auto_quantity > self.part_max_quantity:
            raise ValueError(f"{variable('part_auto_quantity')} ({self.part_auto_quantity}) cannot be above "
                             f"{variable('part_max_quantity')} ({self.part_max_quantity}) / 自动批准数量不能超过最大数量")
        return self

    # --- where each value came from ------------------------------------------------------------

    def source(self, name: str) -> Source:
        return self._sources.get(name, "default")  # type: ignore[return-value]

    # --- the policies the product runs by --------------------------------------------------------

    def loop_policy(self) -> LoopPolicy:
        return LoopPolicy(
            record_within=self.record_within, handle_within=self.handle_within,
            appointment_grace=self.appointment_grace, follow_up_within=self.follow_up_within,
            review_within=self.review_within, feed_back_within=self.feed_back_within,
            feedback_departments=parse_routes(self.route_causes, CAUSES),
            intent_departments=parse_routes(self.route_intents, INTENTS),
        )

    def quality_policy(self) -> QualityPolicy:
        return QualityPolicy(currency=self.currency, prices=parse_prices(self.prices),
                             penalties=parse_penalties(self.penalties), repeat_within=self.repeat_within)

    def dispatch_policy(self, auto_default: bool = False) -> DispatchPolicy:
        """`auto_default` decides automatic dispatch when CLOSEDLOOP_AUTO_DISPATCH is unset
        (on for serve and demo, off for a library user and for imports)."""
        auto = self.auto_dispatch if self.auto_dispatch is not None else auto_default
        return DispatchPolicy(auto_dispatch=auto, accept_within=self.accept_within,
                              escalate_after=self.escalate_after, max_redispatches=self.max_redispatches,
                              warning_share=self.warning_share, repeat_within=self.repeat_within,
                              utc_offset=self.utc_offset, behind=self.backfill_lag)

    def permit_policy(self) -> PermitRules:
        overrides = permit_rules_text(self.permit_rules) if self.permit_rules else {}
        rules = PermitRules.from_mapping(overrides)
        if "repeat_within" not in overrides:
            rules = replace(rules, repeat_within=self.repeat_within)
        return rules

    def parts_policy(self) -> PartsRules:
        return PartsRules(auto_approve=self.auto_approve_parts, max_quantity=self.part_max_quantity,
                          auto_quantity=self.part_auto_quantity, first_level_fallback=self.part_first_level_fallback)

    def network_config(self, auto_default: bool = False) -> Any:
        """Dispatch, permit and parts rules together (a `closedloop.reactors.network.NetworkConfig`)."""
        from closedloop.reactors.network import NetworkConfig

        return NetworkConfig(self.dispatch_policy(auto_default), self.permit_policy(), self.parts_policy())

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection security every Kafka client shares, as kafka-python keyword arguments."""
        options: dict[str, Any] = {}
        for name, key in (("kafka_security_protocol", "security_protocol"), ("kafka_sasl_mechanism", "sasl_mechanism"),
                          ("kafka_sasl_username", "sasl_plain_username"),
                          ("kafka_sasl_password", "sasl_plain_password"), ("kafka_ssl_cafile", "ssl_cafile")):
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value:
                options[key] = value
        return options


FIELDS: tuple[str, ...] = tuple(Settings.model_fields)


# --- loading --------------------------------------------------------------------------------------

def _error(exc: ValidationError, sources: Mapping[str, str]) -> SettingsError:
    err = exc.errors(include_url=False)[0]
    message = str(err.get("msg", "invalid value"))
    for lead in ("Value error, ", "Assertion failed, "):
        if message.startswith(lead):
            message = message[len(lead):]
    loc = err.get("loc") or ()
    name = str(loc[0]) if loc else None
    if name is None or name not in Settings.model_fields:
        if name is not None:  # a key no setting has
            return SettingsError(f"{flag(name)}: no such setting / 没有这个设置项", name)
        return SettingsError(message)
    label = flag(name) if sources.get(name) == "flag" else variable(name)
    if err.get("type") != "value_error":  # pydantic's own words (a flag of the wrong type)
        message = f"{_shown(err.get('input'))} is not accepted: {message}"
    return SettingsError(f"{label}: {message}", name)


def _validated(values: Mapping[str, Any]) -> Settings:
    token = _READ_ENVIRONMENT.set(False)
    try:
        return Settings.model_validate(dict(values))
    finally:
        _READ_ENVIRONMENT.reset(token)


def default_settings() -> Settings:
    """Every setting at its default, whatever the environment says."""
    return _validated({})


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The environment (`env`, default os.environ), then `flags` on top: a mapping of field name
    (e.g. "port", "database_url") to value; None values are ignored (a flag not given). Raises
    SettingsError, one line naming the variable or flag, on any bad value or unknown flag."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        text = env.get(variable(name))
        if text is None or (text == "" and name not in EMPTY_MEANS_NONE):
            continue
        values[name] = text
        sources[name] = "environment"
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in Settings.model_fields:
            raise SettingsError(f"{flag(name)}: no such setting / 没有这个设置项", name)
        values[name] = value
        sources[name] = "flag"
    try:
        settings = _validated(values)
    except ValidationError as exc:
        raise _error(exc, sources) from None
    settings._sources = sources
    return settings


# --- for `closedloop config` ------------------------------------------------------------------------

@dataclass(frozen=True)
class SettingRow:
    name: str
    variable: str
    value: str
    source: str  # default | environment | flag
    description: str


def format_duration(ms: int) -> str:
    if ms == 0:
        return "0"
    if ms % DAY == 0 and ms >= 7 * DAY:
        return f"{ms // DAY}d"
    for unit, size in (("h", HOUR), ("m", MINUTE), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def format_offset(ms: int) -> str:
    sign = "-" if ms < 0 else "+"
    minutes = abs(ms) // MINUTE
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def shown_value(settings: Settings, name: str) -> str:
    """A setting as text, the way it is written in the environment; secrets hidden."""
    value = getattr(settings, name)
    if value is None:
        return UNSET_SHOWN
    if isinstance(value, SecretStr):
        return SECRET_SHOWN if value.get_secret_value() else UNSET_SHOWN
    metadata = Settings.model_fields[name].metadata
    if any(getattr(m, "func", None) is _duration for m in metadata):
        return format_duration(value)
    if name == "utc_offset":
        return format_offset(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(settings: Settings) -> list[SettingRow]:
    """Every setting: its variable, its value as text (secrets as ********), where it came from
    (default, environment or flag) and what it means."""
    return [SettingRow(name, variable(name), shown_value(settings, name), settings.source(name),
                       Settings.model_fields[name].description or "")
            for name in FIELDS]
