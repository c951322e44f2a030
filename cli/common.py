"""What every command shares: the options that mirror a setting, the values the flags take,
loading the settings, opening the engine, progress bars and one-line refusals.

An option that mirrors a `CLOSEDLOOP_*` variable defaults to None and is handed to
`load_settings` as a flag, so that a flag overrides the environment and `closedloop config`
can say where each value came from. The command line reads no `CLOSEDLOOP_*` variable itself.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable

import click

from closedloop.app.settings import Settings, load_settings, shown_value, variable


# --- a refusal: one line, and the exit code says why ------------------------------------------
class Refused(click.ClickException):
    """Something the command cannot do as things stand (no database, a port taken): one line,
    English and Chinese, exit 1."""

    exit_code = 1


class PipeClosed(Exception):
    """The reader of our stdout went away (`closedloop generate | head -1`)."""


class Group(click.Group):
    """A group (the root, `keys`) that notes which command runs, for the error line, and
    tells a closed pipe apart from a failure."""

    group_class = type  # a group made inside is one of these too

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            STATE.command = f"{ctx.command_path} {command.name}"
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # click's own handler would exit 1; the reader going away is no failure of ours
            raise PipeClosed() from None


# --- the values flags take, each with its error in English and Chinese ------------------------
class Moment(click.ParamType):
    name = "date-time"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date-time; try 2026-10-30T08:00:00Z "
                      f"/ 不是有效的日期时间，例如 2026-10-30T08:00:00Z", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Period(click.ParamType):
    name = "period"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from closedloop.domain.quality import period_range

        try:
            period_range(str(value))
        except ValueError as exc:
            self.fail(f"{exc} / 不是有效的结算期 (如 2026、2026-10、2026-W44、2026-10-30)", param, ctx)
        return str(value)


class Member(click.ParamType):
    name = "k/n"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        from closedloop.consumers.kafka_consumer import parse_member

        try:
            return parse_member(str(value))
        except ValueError as exc:
            self.fail(f"{exc} / 不是有效的成员编号 k/n (1 ≤ k ≤ n，如 1/2)", param, ctx)


class Number(click.ParamType):
    """A whole number (or a real one) of at least `minimum`."""

    def __init__(self, minimum: float = 1, whole: bool = True) -> None:
        self.minimum = minimum
        self.whole = whole
        self.name = "integer" if whole else "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number: int | float | None = value
        else:
            try:
                number = int(str(value)) if self.whole else float(str(value))
            except ValueError:
                number = None
        if number is None or number != number or number < self.minimum:
            kind, kind_zh = ("a whole number", "整数") if self.whole else ("a number", "数值")
            self.fail(f"{value!r} is not {kind} ≥ {self.minimum:g} / 不是有效的{kind_zh} (≥ {self.minimum:g})",
                      param, ctx)
        return number


# --- options ----------------------------------------------------------------------------------
def _default_text(name: str, unset: str | None = None) -> str:
    """`--port`'s default as help shows it: the variable, else its default."""
    field = Settings.model_fields[name]
    if unset is None:
        default = field.get_default()
        unset = shown_value(Settings.model_construct(**{name: default}), name) if default is not None else "unset"
    return f"${variable(name)}, else {unset}"


def setting_option(name: str, *decls: str, unset: str | None = None, **kwargs: Any) -> Callable:
    """An option that mirrors the setting `name`: None unless given, then a flag over the
    environment. `unset` says what applies when neither sets it."""
    decls = decls or ("--" + name.replace("_", "-"),)
    kwargs.setdefault("metavar", "TEXT")
    return click.option(*decls, name, default=None, show_default=_default_text(name, unset), **kwargs)


def option(*decls: str, **kwargs: Any) -> Callable:
    """click.option that always shows its default (`off` for a flag)."""
    if kwargs.get("is_flag") and kwargs.get("default") in (None, False) and "show_default" not in kwargs:
        kwargs["show_default"] = "off"
    kwargs.setdefault("show_default", True)
    return click.option(*decls, **kwargs)


def database_option(f: Callable | None = None, *, unset: str | None = None) -> Callable:
    add = setting_option("database_url", "--database", "--database-url", metavar="URL", unset=unset,
                         help="where the log and views live: sqlite:///file.db or postgresql://user@host:port/db")
    return add(f) if f is not None else add


def listen_options(f: Callable) -> Callable:
    f = setting_option("port", metavar="PORT", help="the port to listen on (1-65535)")(f)
    return setting_option("host", metavar="HOST", help="the address to listen on")(f)


def dispatch_option(unset: str) -> Callable:
    return setting_option("auto_dispatch", "--auto-dispatch/--no-auto-dispatch", unset=unset, metavar=None,
                          help="the engine picks outlets for registered cases, re-dispatches declined ones and "
                          "escalates unaccepted ones to the next outlet")


def progress_option(f: Callable) -> Callable:
    return setting_option("no_progress", "--no-progress", is_flag=True, flag_value=True, metavar=None,
                          help="hide the progress bars")(f)


def bootstrap_option(f: Callable) -> Callable:
    return setting_option("kafka_bootstrap", "--bootstrap", metavar="HOST:PORT[,HOST:PORT]",
                          help="the Kafka brokers")(f)


def partitions_option(help: str) -> Callable:
    return setting_option("kafka_partitions", "--partitions", metavar="N", help=help)


def workload_options(days: int, calls: int) -> Callable:
    def add(f: Callable) -> Callable:
        for decl, default, help in reversed((
            ("--days", days, "days of calls"),
            ("--calls-per-day", calls, "calls a day"),
            ("--outlets", 40, "service outlets"),
            ("--regions", 8, "regions the outlets cover"),
            ("--seed", 7, "the random seed: the same seed, the same workload"),
        )):
            f = option(decl, type=Number(0 if decl == "--seed" else 1), default=default, help=help)(f)
        return f
    return add


# --- the settings in force, and the engine ----------------------------------------------------
@dataclass
class State:
    """What the error handler needs to know of the command that ran (one per process)."""

    settings: Settings | None = None
    command: str = "closedloop"


STATE = State()


def settings_from(**flags: Any) -> Settings:
    """The environment, then the flags given (None: not given); raises SettingsError."""
    settings = load_settings(flags)
    STATE.settings = settings
    return settings


def require_database(settings: Settings, command: str) -> None:
    """A command that only reads finds the database or says there is none: it never makes one."""
    from closedloop.log.storage import database_exists

    url = settings.database_url
    if not database_exists(url):
        shown = describe_url(url)
        where = "the file does not exist" if url.startswith("sqlite") else "its tables do not exist"
        raise Refused(f"no closedloop database at {shown} ({where}); check --database / {variable('database_url')}, "
                      f"or make one with `closedloop ingest` or `closedloop serve` "
                      f"/ 该地址没有 closedloop 数据库，请检查 --database 或 {variable('database_url')}")


def describe_url(url: str) -> str:
    """A database URL with its password hidden."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return url.replace(f":{parsed.password}@", ":***@") if parsed.password else url


def open_engine(settings: Settings, *, auto_default: bool = False, share: tuple[int, int] = (1, 1),
                must_exist: str | None = None):
    """The engine over the settings' database. Automatic dispatch as the flag, else the
    environment, else `auto_default` says. `must_exist`: the command's name, when it only reads."""
    from closedloop.app.engine import Engine

    network = settings.network_config(auto_default=auto_default)
    if must_exist:
        require_database(settings, must_exist)
    return Engine.open(settings.database_url, settings=settings, network=network, share=share)


def open_read_storage(settings: Settings, command: str):
    """The storage alone, for a command that only reads: it must exist, and no engine is made
    (making one prepares the views and would rebuild those whose rules changed)."""
    from closedloop.log.storage import open_storage

    require_database(settings, command)
    return open_storage(settings.database_url, synchronous=settings.sqlite_synchronous)


def worker_count(settings: Settings) -> int:
    """Processes folding views at once: the setting, else one per core."""
    return max(1, settings.replay_workers or os.cpu_count() or 1)


def progress(settings: Settings, total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ev", unit_scale=True, file=sys.stderr, disable=settings.no_progress)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def say(text: str) -> None:
    """A line for the person at the terminal (stderr: stdout is for what pipes carry)."""
    click.echo(text, err=True)
