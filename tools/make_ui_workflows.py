"""Regenerate the UI-format (drag-and-drop) workflows from their API-format twins, through the real frontend.

Each ``workflows/api/<name>.json`` becomes ``workflows/<name>.json``: the API prompt is loaded into the
ComfyUI web frontend (headless Chromium, see ``tests/frontend.py``) as if dropped on the canvas, then
exported. Each result is converted back to an API prompt and checked against its twin before it is written.

Needs a running ComfyUI server with this pack loaded (the model and input files the workflows name need not
exist there: the frontend keeps combo values its lists lack), e.g.::

    python main.py --cpu --port 8190 ...    # in the ComfyUI checkout
    python tools/make_ui_workflows.py --url http://127.0.0.1:8190
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from frontend import api_to_ui, open_frontend, ui_to_api, without_meta  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8190", help="the ComfyUI server (default: %(default)s)")
    parser.add_argument("--workflows", default=os.path.join(ROOT, "workflows"),
                        help="folder holding api/*.json; UI files are written here (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the frontend")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail if a UI file is missing or differs from what would be written")
    args = parser.parse_args(argv)

    sources = sorted(glob.glob(os.path.join(args.workflows, "api", "*.json")))
    if not sources:
        parser.error(f"no API workflows in {os.path.join(args.workflows, 'api')}")
    failures = 0
    with open_frontend(args.url, timeout=args.timeout) as page:
        for source in sources:
            name = os.path.splitext(os.path.basename(source))[0]
            target = os.path.join(args.workflows, name + ".json")
            with open(source) as f:
                api = json.load(f)
            ui = api_to_ui(page, api, name)
            back = without_meta(ui_to_api(page, ui, name))
            if back != without_meta(api):
                failures += 1
                print(f"FAIL {name}: the UI workflow does not convert back to its API twin:\n"
                      f"  twin:  {json.dumps(without_meta(api), sort_keys=True)}\n"
                      f"  back:  {json.dumps(back, sort_keys=True)}", file=sys.stderr)
                continue
            text = json.dumps(ui, indent=2) + "\n"
            if args.check:
                current = open(target).read() if os.path.exists(target) else None
                if current != text:
                    failures += 1
                    print(f"STALE {os.path.relpath(target, ROOT)}", file=sys.stderr)
                else:
                    print(f"ok    {os.path.relpath(target, ROOT)}")
                continue
            with open(target, "w") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(target, ROOT)} ({len(ui['nodes'])} nodes, {len(ui['links'])} links)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
