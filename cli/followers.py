"""`closedloop followers`: where each view, reactor and publisher stands in the log, and resuming one that stopped."""

from __future__ import annotations

import click

from closedloop.cli.common import Group, database_option, option, print_json, require_database, say, settings_from


def _open_storage(settings, command: str):
    # only the log and the followers' table: building an engine would prepare (and maybe
    # rebuild) views, which a command that reads or clears one row must not do
    from closedloop.log.storage import open_storage

    require_database(settings, command)
    return open_storage(settings.database_url, synchronous=settings.sqlite_synchronous)


def _iso(ms: int | None) -> str | None:
    from datetime import UTC, datetime

    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


@click.group(cls=Group, invoke_without_command=True,
             short_help="each view's, reactor's and publisher's position, lag and state; resume a stopped one")
@database_option
@option("--json", "as_json", is_flag=True, help="as JSON, for machines")
@click.pass_context
def followers(ctx: click.Context, database_url, as_json) -> int | None:
    """Everything that follows the log — views, reactors, the Kafka publisher — with its
    position, its lag behind the log's head and its state. A follower that failed on a stored
    fact is `failed`, with the fact's position and id and the error; the others go on.
    After a fix, `closedloop followers resume NAME` lets it carry on from where it stopped.
    Exits 3 while a follower is stopped, for monitors.

    跟随者：每个视图、反应器和发布者在日志中的位置、落后量和状态；失败者可在修复后恢复。"""
    ctx.obj = {"database_url": database_url}
    if ctx.invoked_subcommand is not None:
        return None
    from closedloop.log.eventlog import EventLog
    from closedloop.log.followers import status

    settings = settings_from(database_url=database_url)
    storage = _open_storage(settings, "followers")
    try:
        rows = status(storage, EventLog(storage, recent_size=0).head)
    finally:
        storage.close()
    if as_json:
        print_json([dict(r.to_json(), failed_at=_iso(r.failed_at)) for r in rows])
    else:
        click.echo(f"{'kind':<10} {'name':<24} {'position':>10} {'lag':>8}  state")
        for r in rows:
            line = f"{r.kind:<10} {r.name:<24} {r.position:>10} {r.lag:>8}  {r.state}"
            if r.state == "failed":
                line += (f" at position {r.failed_position} (event {r.failed_fact}) since {_iso(r.failed_at)}: "
                         f"{(r.error or '').splitlines()[-1]}")
            click.echo(line)
    failed = [r for r in rows if r.state == "failed"]
    if failed:
        say(f"{len(failed)} follower(s) stopped on a failure / {len(failed)} 个跟随者因故障停止: "
            + ", ".join(f"{r.kind} {r.name}" for r in failed))
        return 3  # as `verify` on a tampered log: something needs an operator
    return 0


@followers.command("resume", short_help="let a stopped follower carry on from where it stopped")
@click.argument("name")
@option("--kind", type=click.Choice(["view", "reactor", "publisher"]), default=None, show_default="any kind",
        help="only the follower of this kind")
@database_option
@click.pass_context
def resume(ctx: click.Context, name, kind, database_url) -> int:
    """Clear the failure of the follower NAME: the running server (or the next command that
    follows the log) takes the facts from where it stopped."""
    from closedloop.log.followers import resume as resume_follower

    settings = settings_from(database_url=database_url or (ctx.obj or {}).get("database_url"))
    storage = _open_storage(settings, "followers resume")
    try:
        n = resume_follower(storage, name, kind)
    finally:
        storage.close()
    if not n:
        say(f"no stopped follower named {name!r} / 没有名为 {name!r} 的已停止跟随者")
        return 1
    say(f"{name!r} resumes from where it stopped / {name!r} 将从停止处继续")
    return 0
