"""`closedloop config`: the settings in force and where each came from."""

from __future__ import annotations

import json

import click

from closedloop.app.settings import describe
from closedloop.cli.common import database_option, describe_url, listen_options, option, settings_from


@click.command(short_help="the settings in force and where each came from (default, environment, flag)")
@option("--json", "as_json", is_flag=True, help="as JSON, for machines")
@database_option
@listen_options
def config(as_json, database_url, host, port) -> int:
    """Every setting in force: its variable, its value (secrets hidden), where it came from
    (default, environment or flag) and what it means. Flags given here show as `flag`, as
    they would for a command given them. Reads no database."""
    settings = settings_from(database_url=database_url, host=host, port=port)
    rows = []
    for row in describe(settings):
        value = describe_url(row.value) if row.name == "database_url" else row.value
        rows.append({"name": row.name, "variable": row.variable, "value": value, "source": row.source,
                     "description": row.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    width = max(len(r["variable"]) for r in rows)
    value_width = min(40, max(len(r["value"]) for r in rows))
    click.echo(f"{'variable':<{width}}  {'value':<{value_width}}  {'source':<11}  meaning")
    for r in rows:
        click.echo(f"{r['variable']:<{width}}  {r['value']:<{value_width}}  {r['source']:<11}  {r['description']}")
    return 0
