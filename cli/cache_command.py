"""``quadd cache ls|clear``: what the cache folder keeps (DM pools and decoded datasets),
and removing it. See ``quadd_train.cache``."""

from __future__ import annotations

import time
from typing import Any

import click

from .output import json_line

__all__ = ["cache_command"]


@click.group("cache")
def cache_command() -> None:
    """List or clear the cache of DM pools and decoded datasets."""


@cache_command.command("ls")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per entry, then one with the totals.")
def ls_command(as_json: bool) -> None:
    """List the cached DM pools (what data and settings, size, last used; total against
    the cap, $QUADD_POOL_CACHE_MAX) and the decoded datasets."""
    from quadd_train.cache import datasets_dir, list_entries, pool_cache_cap, pools_dir
    from quadd_train.data import default_cache_dir

    root = default_cache_dir()
    cap = pool_cache_cap()
    entries = list_entries(root)
    sections = (("pool", pools_dir(root)), ("dataset", datasets_dir(root)))
    if as_json:
        for e in entries:
            click.echo(json_line({"kind": e.kind, "name": e.name, "path": str(e.path),
                                  "bytes": e.bytes, "last_used": e.last_used,
                                  "label": e.label}))
        totals: dict[str, Any] = {"cache": str(root), "pool_cap_bytes": cap}
        for kind, _folder in sections:
            totals[f"{kind}_bytes"] = sum(e.bytes for e in entries if e.kind == kind)
        click.echo(json_line(totals))
        return
    for kind, folder in sections:
        mine = [e for e in entries if e.kind == kind]
        total = sum(e.bytes for e in mine)
        limit = ""
        if kind == "pool":
            limit = f" of the {_size(cap)} cap" if cap else " (the pool cache is off)"
        count = f"{len(mine)} entr{'y' if len(mine) == 1 else 'ies'}"
        click.echo(f"{kind}s in {folder}: {count}, {_size(total)}{limit}")
        for e in mine:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
            click.echo(f"  {e.name}  {_size(e.bytes):>9}  used {used}  {e.label}")


@cache_command.command("clear")
@click.option("--pools", is_flag=True, help="Remove the cached DM pools.")
@click.option("--datasets", is_flag=True,
              help="Remove the decoded datasets (rebuilt from their archives when next "
              "loaded; the archives themselves are never removed).")
@click.option("--all", "all_", is_flag=True, help="Both (the default).")
def clear_command(pools: bool, datasets: bool, all_: bool) -> None:
    """Remove cached DM pools and/or decoded datasets (default: both)."""
    from quadd_train.cache import clear_cache
    from quadd_train.data import default_cache_dir

    if all_ or not (pools or datasets):
        pools = datasets = True
    root = default_cache_dir()
    count, total = clear_cache(pools=pools, datasets=datasets, root=root)
    what = " and ".join(w for w, on in (("pools", pools), ("decoded datasets", datasets))
                        if on)
    click.echo(f"removed {count} entr{'y' if count == 1 else 'ies'} ({_size(total)}) of "
               f"{what} from {root}")


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"
