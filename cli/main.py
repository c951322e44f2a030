"""The `closedloop` command: serve the API, run the demo, replay the log, import events.

The commands live by kind: `serve.py` (serve, demo), `data.py` (the log and its views),
`streams.py` (Kafka), `config.py`; `common.py` holds what they share. This module is the
root: it gathers them, and turns whatever goes wrong into one line on stderr and an exit
code (2 for a usage error or a bad setting, 1 for a refusal or a failure, 130 for Ctrl-C,
141 when the reader of stdout went away), never a traceback unless CLOSEDLOOP_DEBUG asks.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import click

from closedloop.app.settings import SettingsError
from closedloop.cli import common

EXAMPLES = """\b
Examples:
  closedloop demo                          five days of calls, reported and served on :8000
  closedloop demo --no-serve --port 8001   report and exit, on another port
  closedloop serve --database postgresql://app@127.0.0.1:5432/prod
  closedloop generate --days 2 -o calls.jsonl && closedloop ingest calls.jsonl
  closedloop status | jq .loop
  closedloop statement --period 2026-10 --outlet OUT-1 --csv > out-1.csv
  closedloop config                        what is set, and where it came from
  CLOSEDLOOP_PORT=9000 closedloop serve    every flag has a CLOSEDLOOP_* variable too

\b
Every option's default is shown in each command's --help; a flag overrides its variable.
每个命令的 --help 列出选项及默认值；命令行参数优先于环境变量。
"""


class Group(common.Group):
    """The root: our handling of errors around click's."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """click's main, with our handling of errors: the exit code is returned (or, standalone,
        exited with, as click does)."""
        code = _run(self, args, prog_name or "closedloop", complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code



def _line(text: str) -> str:
    return " ".join(str(text).split())


def _run(group: click.Group, args: Sequence[str] | None, prog_name: str, complete_var: str | None, **extra: Any) -> int:
    common.STATE.command = prog_name
    common.STATE.settings = None
    try:
        try:
            code = click.Group.main(group, args, prog_name, complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()
        except BrokenPipeError:
            raise common.PipeClosed() from None
    except common.PipeClosed:
        _quiet_stdout()
        return 141
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # `closedloop` alone: the help, as click gives it
        return exc.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else common.STATE.command
        click.echo(f"{where}: {_line(exc.format_message())} (usage error / 用法错误; see {where} --help)", err=True)
        return 2
    except SettingsError as exc:
        click.echo(f"{common.STATE.command}: {_line(exc)}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"{common.STATE.command}: {_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo(f"{common.STATE.command}: interrupted / 已中断", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the user's language, not a traceback
        settings = common.STATE.settings
        if settings is not None and settings.debug:
            raise
        from closedloop.log.storage import ConfigurationError

        hint = "" if isinstance(exc, (ConfigurationError, ValueError, OSError)) else \
            f" ({type(exc).__name__}; CLOSEDLOOP_DEBUG=1 shows the traceback / 设置 CLOSEDLOOP_DEBUG=1 查看详情)"
        click.echo(f"{common.STATE.command}: {_line(exc) or type(exc).__name__}{hint}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def _quiet_stdout() -> None:
    """Whatever is still buffered for the closed pipe goes nowhere, and says nothing at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # not a real file (a test's runner): nothing will be flushed to a pipe


@click.group("closedloop", cls=Group, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"],
                                                           "max_content_width": 110})
@click.version_option(package_name="closedloop", prog_name="closedloop", message="%(prog)s %(version)s")
def cli() -> None:
    """closedloop: an event-sourced, closed-loop after-sales service engine.

    Every problem recorded, handled, reviewed and fed back; the loop, the three controls,
    the service network and settlement, over one immutable log. Settings come from
    CLOSEDLOOP_* variables (see `closedloop config`); flags override them.

    闭环售后服务引擎：记录、处理、回访、反馈，一个不漏。
    """


def _register() -> None:
    from closedloop.cli import config, data, followers, serve, streams

    for command in (serve.serve, serve.demo, data.replay, data.ingest, data.generate, data.verify, data.checkpoint,
                    data.keys, data.statement, data.status, streams.consume, streams.kafka_lag, streams.publish,
                    config.config, followers.followers):
        cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """The `closedloop` entry point: the exit code."""
    return cli.main(args=list(argv) if argv is not None else None, prog_name="closedloop", standalone_mode=False)


if __name__ == "__main__":
    raise SystemExit(main())
