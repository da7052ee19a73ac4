"""Drive the real ComfyUI web frontend headlessly, to convert workflows between the API and UI formats.

ComfyUI has two workflow formats: the API "prompt" (``{id: {"class_type", "inputs"}}``, what ``POST /prompt``
runs) and the UI workflow (nodes, links, ``widgets_values``; what you drag onto the canvas). Only the web
frontend knows how one maps onto the other (widget order, hidden widgets, link slots), so rather than
re-implementing it, this module loads the frontend that the server serves into headless Chromium and asks it::

    with open_frontend("http://127.0.0.1:8188") as page:
        ui = api_to_ui(page, api_prompt)      # as dropping an API .json onto the canvas, then Export
        api = ui_to_api(page, ui)             # as dropping a workflow .json onto the canvas, then Run

Requirements: ``pip install playwright`` and a Chromium binary (``/usr/bin/chromium`` from Debian's
``chromium`` package, or set ``FRAMESTREAM_CHROMIUM``); ``playwright install`` is not needed.

The page is kept hermetic, so conversions do not depend on (or change) the server's state:

* ``GET /api/settings`` is answered with :data:`FRONTEND_SETTINGS` instead of the server user's settings;
* no request other than GET reaches the server (settings and user data are never written);
* requests to any other host are refused (the frontend calls e.g. api.comfy.org for release notes).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator
from urllib.parse import urlsplit

__all__ = [
    "FrontendError", "FRONTEND_SETTINGS", "open_frontend", "api_to_ui", "ui_to_api", "missing_node_types",
    "without_meta",
]

CHROMIUM = os.environ.get("FRAMESTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_S = 60.0

#: The settings the page sees instead of the server user's. ``Comfy.Workflow.Persist`` off means the
#: frontend neither restores a previous workflow at start-up (which would race with our first load) nor
#: keeps one in local storage; ``Comfy.TutorialCompleted`` skips the first-run template browser.
FRONTEND_SETTINGS = {
    "Comfy.Workflow.Persist": False,
    "Comfy.TutorialCompleted": True,
}


class FrontendError(RuntimeError):
    """The frontend did not load, or could not convert a workflow."""


@contextlib.contextmanager
def open_frontend(url: str, *, timeout: float = TIMEOUT_S, settings: dict | None = None,
                  executable_path: str | None = None,
                  requested: list[str] | None = None) -> Iterator["playwright.sync_api.Page"]:  # noqa: F821
    """Open the ComfyUI frontend served at ``url`` in headless Chromium; yield the page once the app is ready.

    Ready means ``window.app`` is set (the frontend sets it when its setup has finished: node definitions are
    fetched and registered, extensions are set up) and ``app.graph`` and ``LiteGraph`` exist.
    ``settings`` are merged over :data:`FRONTEND_SETTINGS`. Every wait is bounded by ``timeout`` seconds.
    ``requested``, when given, receives the path of every request the page makes to the server (to tell
    which extension scripts it loaded). Uses playwright's sync API, so call it outside any running asyncio loop.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base = url.rstrip("/")
    origin = urlsplit(base)
    frontend_settings = {**FRONTEND_SETTINGS, **(settings or {})}
    executable = executable_path or CHROMIUM
    if not os.path.exists(executable):
        raise FrontendError(f"no Chromium at {executable} (apt-get install chromium, or set FRAMESTREAM_CHROMIUM)")
    timeout_ms = timeout * 1000

    def route(request_route):
        request = request_route.request
        target = urlsplit(request.url)
        if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
            return request_route.abort("blockedbyclient")
        if requested is not None:
            requested.append(target.path)
        if request.method != "GET":
            return request_route.fulfill(status=200, content_type="application/json", body="{}")
        if target.path.rstrip("/").endswith("/api/settings"):
            return request_route.fulfill(status=200, content_type="application/json",
                                         body=json.dumps(frontend_settings))
        return request_route.continue_()

    errors: list[str] = []
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS,
                                         timeout=timeout_ms)
        except PlaywrightError as exc:
            raise FrontendError(f"could not start Chromium ({executable}): {exc}") from exc
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 900})
            context.set_default_timeout(timeout_ms)
            context.route("**/*", route)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                page.goto(base + "/", wait_until="domcontentloaded", timeout=timeout_ms)
                page.wait_for_function(
                    "() => !!(window.app && window.app.graph && window.app.canvas && window.LiteGraph"
                    " && Object.keys(LiteGraph.registered_node_types).length)",
                    timeout=timeout_ms, polling=100)
                page.evaluate("() => document.fonts.ready.then(() => true)")  # node sizes depend on text widths
            except (PlaywrightTimeout, PlaywrightError) as exc:
                detail = f"; page errors: {errors[:3]}" if errors else ""
                raise FrontendError(f"could not open the ComfyUI frontend at {base} (timeout {timeout:g} s): "
                                    f"{exc}{detail}") from exc
            yield page
        finally:
            browser.close()


def missing_node_types(page, workflow: dict) -> list[str]:
    """Node types used by ``workflow`` (UI format, subgraph definitions included, or an API prompt) that the
    frontend has not registered (``LiteGraph.registered_node_types``), sorted and without repeats."""
    if "nodes" in workflow:
        subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
        types = {node["type"] for node in workflow["nodes"]}
        types |= {node["type"] for subgraph in subgraphs for node in subgraph.get("nodes", [])}
        types -= {subgraph["id"] for subgraph in subgraphs}  # instances of a subgraph: typed by its definition
    else:
        types = {node["class_type"] for node in workflow.values()}
    registered = page.evaluate("(types) => types.filter((t) => t in LiteGraph.registered_node_types)",
                               sorted(types))
    return sorted(types - set(registered))


def api_to_ui(page, api: dict, name: str = "workflow", *, timeout: float = TIMEOUT_S) -> dict:
    """Convert an API prompt to a UI workflow, exactly as the frontend does when one is dropped on the canvas
    and then exported (Workflow > Export): ``app.loadApiJson`` creates the nodes with their API ids, sets the
    widgets, links the inputs and lays the graph out left to right by execution depth (``graph.arrange()``);
    the result is ``(await app.graphToPrompt()).workflow`` as ``JSON.stringify`` writes it (so keys whose
    value is ``undefined`` are left out, as in an exported file).
    """
    missing = missing_node_types(page, api)
    if missing:  # loadApiJson would only show a dialog and leave the graph as it was
        raise FrontendError(f"node types unknown to the frontend (is the custom node pack loaded?): {missing}")
    result = _evaluate(page, """async ([api, name]) => {
        const store = app.extensionManager.workflow;
        const before = store.activeWorkflow;
        app.loadApiJson(api, name);  // not async, but it opens the new workflow tab without awaiting it
        for (let i = 0; i < 100 && store.activeWorkflow === before; i++) await new Promise((r) => setTimeout(r, 20));
        const prompt = await app.graphToPrompt();
        return JSON.stringify({ids: app.graph.nodes.map((n) => String(n.id)), workflow: prompt.workflow});
    }""", [api, name], "loading the API prompt", timeout)
    _check_loaded(result["ids"], list(api), "API prompt")
    return result["workflow"]


def ui_to_api(page, ui: dict, name: str = "workflow", *, timeout: float = TIMEOUT_S) -> dict:
    """Convert a UI workflow to the API prompt the frontend would queue: ``await app.loadGraphData(ui)`` (what
    dropping the .json file on the canvas calls), then ``(await app.graphToPrompt()).output``.

    Each node of the result has ``class_type``, ``inputs`` and the frontend's ``_meta`` (its title, which the
    server ignores); :func:`without_meta` drops the latter for comparisons.
    """
    missing = missing_node_types(page, ui)
    if missing:  # loadGraphData would put placeholder nodes in their place, with no class_type
        raise FrontendError(f"node types unknown to the frontend (is the custom node pack loaded?): {missing}")
    result = _evaluate(page, """async ([ui, name]) => {
        const errors = [];
        const onError = console.error;
        console.error = (...args) => { errors.push(args.map(String).join(' ')); onError(...args); };
        try {
            await app.loadGraphData(ui, true, true, name);
        } finally {
            console.error = onError;
        }
        const prompt = await app.graphToPrompt();
        return JSON.stringify({ids: app.graph.nodes.map((n) => String(n.id)), errors, output: prompt.output});
    }""", [ui, name], "loading the UI workflow", timeout)
    # loadGraphData catches its own errors (it shows a dialog and logs them), so check what was loaded
    _check_loaded(result["ids"], [str(node["id"]) for node in ui["nodes"]], "UI workflow", result["errors"])
    return result["output"]


def without_meta(api: dict) -> dict:
    """The API prompt without the frontend's ``_meta`` entries: ``{id: {"class_type", "inputs"}}``."""
    return {node_id: {"class_type": node["class_type"], "inputs": node["inputs"]} for node_id, node in api.items()}


def _evaluate(page, script: str, arg, what: str, timeout: float) -> dict:
    """Run the async JS function ``script`` on ``arg`` in the page, giving up after ``timeout`` seconds (playwright's
    ``evaluate`` itself waits for ever); it returns a JSON string, parsed here."""
    from playwright.sync_api import Error as PlaywrightError

    bounded = f"""async ([arg, ms]) => Promise.race([
        ({script})(arg),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${{ms / 1000}} s`)), ms)),
    ])"""
    try:
        return json.loads(page.evaluate(bounded, [arg, timeout * 1000]))
    except PlaywrightError as exc:
        raise FrontendError(f"the frontend failed while {what}: {exc}") from exc


def _check_loaded(loaded: list[str], expected: list[str], what: str, errors: list[str] = ()) -> None:
    if sorted(loaded) != sorted(expected):
        detail = f"; frontend errors: {list(errors)[:3]}" if errors else ""
        raise FrontendError(f"the frontend did not load the {what}: it has nodes {sorted(loaded)}, the "
                            f"workflow has {sorted(expected)}{detail}")
