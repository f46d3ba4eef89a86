"""Where a report's dashboards come from: Grafana's API by uid, or JSON files.

Without Grafana, a dashboard referenced by uid is looked up among the ``dashboards/*.json``
files next to the config file (or the working directory): our shipped dashboards carry
stable uids, so one report config works with and without Grafana.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

from receiver.config import DashboardRef
from receiver.dashboards import Dashboard, load_file, parse_dashboard
from receiver.grafana import GrafanaClient


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "dashboard"


def find_file(name: str, base_dirs: Sequence[Path]) -> Path:
    p = Path(name)
    candidates = [p] if p.is_absolute() else [d / p for d in base_dirs]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(map(str, candidates))
    raise ValueError(f"dashboard file {name} not found (looked for {looked})")


def find_by_uid(uid: str, base_dirs: Sequence[Path]) -> Dashboard | None:
    for d in base_dirs:
        folder = d / "dashboards"
        for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                dash = load_file(f)
            except ValueError:
                continue
            if dash.uid == uid:
                return dash
    return None


async def load_dashboard(
    ref: DashboardRef, grafana: GrafanaClient | None, base_dirs: Sequence[Path]
) -> tuple[Dashboard, str | None, str]:
    """(dashboard, its Grafana path or None, slug); ValueError or GrafanaError on failure.

    A file's dashboard gets the path Grafana would give it (``/d/uid/slug``), for links and
    renders when it is provisioned into the configured Grafana too.
    """
    if ref.file is not None:
        dash = await asyncio.to_thread(lambda: load_file(find_file(str(ref.file), base_dirs)))
        slug = slugify(dash.title)
        return dash, (f"/d/{dash.uid}/{slug}" if dash.uid else None), slug
    assert ref.uid is not None
    if grafana is not None:
        g = await grafana.dashboard(ref.uid)
        return parse_dashboard(g.model), g.url, g.slug
    found = await asyncio.to_thread(find_by_uid, ref.uid, base_dirs)
    if found is None:
        raise ValueError(f"uid {ref.uid}: no grafana configured and no dashboards/ file with it")
    return found, None, slugify(found.title)
