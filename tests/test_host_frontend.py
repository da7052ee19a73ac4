"""FrameStream in the real web frontend the host serves (headless Chromium, see frontend.py): the shipped
workflows load as their API twins, and the whole-clip preview plays on the classic canvas. Runs only with
``COMFYUI_DIR`` and when playwright and a Chromium are installed; ``FRAMESTREAM_FRONTEND_ROOT`` tries another
frontend release on the same host."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from helpers import DIT_LENGTH, DIT_SIZE, PACK_DIR_NAME, ROOT, load_workflow, needs_host

pytestmark = needs_host


@pytest.fixture(scope="module")
def frontend():
    pytest.importorskip("playwright", reason="the frontend checks need playwright and a Chromium")
    import frontend

    if not os.path.exists(frontend.CHROMIUM):
        pytest.skip(f"no Chromium at {frontend.CHROMIUM} (set FRAMESTREAM_CHROMIUM)")
    return frontend


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


# --- the shipped workflows ------------------------------------------------------------------------------------

def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _declared(definition: dict) -> dict:
    """A node's inputs in ``/object_info``: name -> (optional, spec)."""
    return {name: (group == "optional", spec) for group in ("required", "optional")
            for name, spec in (definition["input"].get(group) or {}).items()}


def _default(spec: list):
    """An input's default in ``/object_info`` (a combo without one: its first option, as the frontend picks)."""
    kind, options = spec[0], (spec[1] if len(spec) > 1 else None) or {}
    if "default" in options:
        return options["default"]
    choices = kind if isinstance(kind, list) else options.get("options")
    return choices[0] if choices else None


def _assert_runs_as_twin(got: dict, twin: dict, definitions: dict, name: str) -> None:
    """The frontend's prompt for a shipped workflow against its API twin, as saved when it was shipped.

    Same nodes and links. FrameStream nodes: exactly the twin's values, plus optional inputs added since, at
    their defaults; values of widgets the node does not declare (the frontend's own, e.g. 1.49's
    ``video-preview`` of an upload combo: the server ignores them) do not count. The host's own nodes, whose
    inputs change between releases, agree on the inputs both have, where a value saved for ``codec`` may have
    moved into a V3 dynamic combo (``format.codec``, as SaveVideo's in 0.33).
    """
    assert sorted(got) == sorted(twin), name
    for node_id, node in twin.items():
        where = f"{name} node {node_id} ({node['class_type']})"
        ours, saved = got[node_id]["inputs"], node["inputs"]
        assert got[node_id]["class_type"] == node["class_type"], where
        assert {k: v for k, v in ours.items() if _is_link(v)} == {k: v for k, v in saved.items() if _is_link(v)}, where
        if node["class_type"].startswith("FrameStream"):
            declared = _declared(definitions[node["class_type"]])
            ours = {k: v for k, v in ours.items() if k in declared}
            assert {k: ours.get(k) for k in saved} == saved, where
            added = {k: v for k, v in ours.items() if k not in saved}
            assert all(declared[k][0] for k in added), f"{where}: new required inputs {sorted(added)}"
            assert added == {k: _default(declared[k][1]) for k in added}, where
        else:
            for key, value in saved.items():
                moved = [v for k, v in ours.items() if k.endswith("." + key)]
                assert key not in ours or ours[key] == value or value in moved, f"{where}: {key}"


def test_ui_workflows_load_in_the_frontend_as_their_api_twins(comfy, frontend):
    """Each drag-and-drop workflow, loaded by the real web frontend, runs its API twin (see
    :func:`_assert_runs_as_twin`; node definitions are the server's ``/object_info``)."""
    url, _, _ = comfy
    definitions = _get(f"{url}/object_info")
    names = sorted(n for n in os.listdir(os.path.join(ROOT, "workflows")) if n.endswith(".json"))
    assert names == sorted(os.listdir(os.path.join(ROOT, "workflows", "api")))
    with frontend.open_frontend(url) as page:
        for name in names:
            with open(os.path.join(ROOT, "workflows", name)) as f:
                ui = json.load(f)
            missing = frontend.missing_node_types(page, ui)
            assert not [kind for kind in missing if kind.startswith("FrameStream")], name
            if missing:  # only host nodes this host does not have (the autoregressive sampler came in 2026)
                assert not set(missing) & set(definitions), name
                continue
            got = frontend.without_meta(frontend.ui_to_api(page, ui, name))
            _assert_runs_as_twin(got, load_workflow(name), definitions, name)


# --- the whole-clip preview on the classic canvas -------------------------------------------------------------

EXTENSION = f"/extensions/{PACK_DIR_NAME}/whole_clip_preview.js"
SAMPLER = "7"
FPS = 2.0  # a frame every 500 ms

SAMPLING_PROMPT = {  # text-to-video with the test DiT, two steps, a preview of the 3 latent frames at each
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "test_wan_t2v.safetensors", "weight_dtype": "default"}},
    "2": {"class_type": "FrameStreamWholeClipPreview",
          "inputs": {"model": ["1", 0], "decoder": "latent to RGB", "size": 64, "fps": FPS, "every": 1}},
    "3": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": 8.0}},
    "4": {"class_type": "FrameStreamTestText", "inputs": {"seed": 1}},
    "5": {"class_type": "FrameStreamTestText", "inputs": {"seed": 2}},
    "6": {"class_type": "EmptyHunyuanLatentVideo",
          "inputs": {"width": DIT_SIZE, "height": DIT_SIZE, "length": DIT_LENGTH, "batch_size": 1}},
    SAMPLER: {"class_type": "KSampler", "inputs": {"model": ["3", 0], "seed": 3, "steps": 2, "cfg": 3.0,
                                                   "sampler_name": "euler", "scheduler": "simple",
                                                   "positive": ["4", 0], "negative": ["5", 0],
                                                   "latent_image": ["6", 0], "denoise": 1.0}},
    "8": {"class_type": "FrameStreamTestProbeLatent", "inputs": {"samples": [SAMPLER, 0], "name": "canvas_preview"}},
}

# In the page. What the sampler node shows: where its image comes from, a digest of its pixels and one of the
# canvas's pixels over the node.
SHOWN = """(id) => {
    const digest = (data) => data.reduce((h, v) => (Math.imul(h, 31) + v) | 0, 7);
    const node = app.graph.getNodeById(id);
    const img = node.imgs?.[0];
    if (!img?.naturalWidth) return null;
    const copy = document.createElement('canvas');
    [copy.width, copy.height] = [img.naturalWidth, img.naturalHeight];
    copy.getContext('2d').drawImage(img, 0, 0);
    const [x, y] = app.canvas.ds.convertOffsetToCanvas(node.pos);
    const scale = app.canvas.ds.scale * app.canvas.canvas.width / app.canvas.canvas.clientWidth;
    const area = app.canvas.canvas.getContext('2d').getImageData(x, y, node.size[0] * scale, node.size[1] * scale);
    return {source: img.src.slice(0, 5), image: digest(copy.getContext('2d').getImageData(0, 0, copy.width,
            copy.height).data), canvas: digest(area.data)};
}"""
# The sampler at the top left of the canvas, large enough to show its preview.
IN_VIEW = """(id) => {
    const node = app.graph.getNodeById(id);
    node.setSize([360, Math.max(node.size[1], 500)]);
    [app.canvas.ds.scale, app.canvas.ds.offset] = [1, [40 - node.pos[0], 80 - node.pos[1]]];
    app.canvas.setDirty(true, true);
}"""
# A static PNG preview for the node, as the host sends one (the frontend redraws on the run's next event).
STATIC_PREVIEW = """async (id) => {
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [40, 30];
    canvas.getContext('2d').fillRect(0, 0, 20, 30);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve));
    const { api } = await import('/scripts/api.js');
    api.dispatchCustomEvent('b_preview_with_metadata',
                            {blob, nodeId: id, displayNodeId: id, realNodeId: id, promptId: 'static', jobId: 'static'});
    app.canvas.setDirty(true, true);
}"""


def _run_for_page(url: str, prompt: dict, client_id: str, timeout: float = 300) -> None:
    """Queues ``prompt`` for the page's client (the host sends that client the previews) and waits for it."""
    body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
    request = urllib.request.Request(f"{url}/prompt", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        prompt_id = json.load(r)["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = _get(f"{url}/history/{prompt_id}").get(prompt_id, {}).get("status", {})
        if status.get("completed") is not None:
            assert status["status_str"] == "success", status
            return
        time.sleep(0.2)
    raise AssertionError("the sampling prompt did not finish in time")


def _shown_over(page, seconds: float) -> list[dict]:
    """What the sampler shows, every 100 ms for ``seconds``."""
    samples = []
    for _ in range(round(seconds * 10)):
        samples.append(page.evaluate(SHOWN, SAMPLER))
        page.wait_for_timeout(100)
    return samples


def _wait_for(page, condition: str, failure: str, timeout_s: float = 20) -> None:
    """Waits until ``condition`` (a JS function of the sampler's id) holds; fails with ``failure`` if it does not."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, arg=SAMPLER, timeout=timeout_s * 1000, polling=50)
    except PlaywrightTimeout:
        pytest.fail(f"{failure} within {timeout_s:g} s")


def test_the_whole_clip_preview_plays_on_the_classic_canvas(host_with_dits, frontend):
    """A real sampling run's animated preview, shown by the sampler on the classic canvas, moves: FrameStream's
    extension (served from the pack's web directory) cycles its frames, where the canvas alone draws the first.
    A static preview stops it; in the Vue node view (which plays the WebP itself) the extension stays out."""
    url, _, _ = host_with_dits
    requested = []
    with frontend.open_frontend(url, settings={"Comfy.VueNodes.Enabled": False}, requested=requested) as page:
        assert EXTENSION in requested
        assert not page.evaluate("() => LiteGraph.vueNodesMode")
        frontend.api_to_ui(page, SAMPLING_PROMPT, "preview")  # the graph on the canvas, with the API's node ids
        page.evaluate(IN_VIEW, SAMPLER)
        client_id = page.evaluate("async () => (await import('/scripts/api.js')).api.clientId")
        _run_for_page(url, SAMPLING_PROMPT, client_id)

        # the run has ended: no more previews come, so what moves now is the last one's animation (the
        # frontend's own image of it, its first frame, may show until the extension's next frame)
        _wait_for(page, "(id) => app.graph.getNodeById(id).imgs?.[0]?.src.startsWith('data:')",
                  "the sampler never showed the extension's frames (data: images)")
        playing = _shown_over(page, 4 / FPS)
        assert len({shown["image"] for shown in playing if shown["source"] == "data:"}) >= 2
        assert len({shown["canvas"] for shown in playing}) >= 2

        page.evaluate(STATIC_PREVIEW, SAMPLER)
        _wait_for(page, "(id) => app.graph.getNodeById(id).imgs?.[0]?.src.startsWith('blob:')",
                  "the frontend did not show the static preview")
        page.wait_for_timeout(300)  # the canvas redraws
        static = _shown_over(page, 2 / FPS)
        assert all(shown == static[0] for shown in static) and static[0]["source"] == "blob:"

        page.evaluate("() => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true)")
        page.wait_for_function("() => LiteGraph.vueNodesMode")
        _run_for_page(url, {**SAMPLING_PROMPT, "4": {"class_type": "FrameStreamTestText", "inputs": {"seed": 4}}},
                      client_id)
        page.wait_for_timeout(2 / FPS * 1000)
        frames = "(id) => (app.graph.getNodeById(id).imgs || []).filter((i) => i.src.startsWith('data:')).length"
        assert page.evaluate(frames, SAMPLER) == 0
        assert page.evaluate("(id) => document.querySelectorAll(`[data-node-id='${id}'] img`).length", SAMPLER)
