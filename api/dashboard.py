"""The dashboard: plain HTML, CSS and JavaScript modules served from the package, reading
the same API as everyone else with a key the user gives the page.

The static files need no key (they hold no data); every data call the page makes carries
the key, which the page keeps in the browser's sessionStorage. `#key=<key>` in the URL
logs the page in: a fragment never reaches the server, so keys stay out of access logs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    index = STATIC / "index.html"

    async def page(request: Request) -> Response:
        # no-cache: a new release's page must not run against an old cached shell
        return FileResponse(index, media_type="text/html", headers={"cache-control": "no-cache"})

    app.add_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/dashboard", StaticFiles(directory=STATIC), name="dashboard")
