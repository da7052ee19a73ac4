"""The shipped workflows stay in step with the nodes (the host test also runs them in a real ComfyUI)."""

import json
import os

import pytest

from framestream import NODE_CLASS_MAPPINGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(ROOT, "workflows")
NAMES = sorted(n for n in os.listdir(WORKFLOWS) if n.endswith(".json"))


def load(*parts):
    with open(os.path.join(WORKFLOWS, *parts)) as f:
        return json.load(f)


def widget_names(cls):
    """Inputs the frontend shows as widgets (not sockets), in order."""
    inputs = {**cls.INPUT_TYPES().get("required", {}), **cls.INPUT_TYPES().get("optional", {})}
    return [name for name, (kind, _) in inputs.items()
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")]


def has_upload_button(cls):
    """The frontend stores an upload button's state after the widget values (e.g. 'image')."""
    return any(options.get("video_upload") or options.get("image_upload")
               for options in (spec[1] for spec in cls.INPUT_TYPES()["required"].values()))


def test_every_ui_workflow_has_an_api_twin():
    assert NAMES and NAMES == sorted(os.listdir(os.path.join(WORKFLOWS, "api")))


@pytest.mark.parametrize("name", NAMES)
def test_framestream_nodes_in_api_twins_use_real_inputs(name):
    for node_id, node in load("api", name).items():
        cls = NODE_CLASS_MAPPINGS.get(node["class_type"])
        if cls is None:
            assert not node["class_type"].startswith("FrameStream"), node["class_type"]
            continue
        declared = cls.INPUT_TYPES()
        assert set(declared["required"]) <= set(node["inputs"]), (name, node_id)
        assert set(node["inputs"]) <= set(declared["required"]) | set(declared.get("optional", {})), (name, node_id)


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_matches_its_twin(name):
    """Same nodes, same links and, for FrameStream nodes, the twin's widget values in the node's order."""
    ui, api = load(name), load("api", name)
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    assert {k: n["type"] for k, n in nodes.items()} == {k: n["class_type"] for k, n in api.items()}
    links = {(str(src), src_slot, str(dst), dst_slot) for _, src, src_slot, dst, dst_slot, _ in ui["links"]}
    expected = set()
    for node_id, node in api.items():
        slots = [i["name"] for i in nodes[node_id]["inputs"]]
        for input_name, value in node["inputs"].items():
            if isinstance(value, list):
                expected.add((value[0], value[1], node_id, slots.index(input_name)))
    assert links == expected
    for node_id, node in api.items():
        cls = NODE_CLASS_MAPPINGS.get(node["class_type"])
        if cls is not None:
            values = [node["inputs"][w] for w in widget_names(cls)]
            stored = nodes[node_id].get("widgets_values", [])
            assert stored[: len(values)] == values, (name, node_id)
            assert len(stored) == len(values) + has_upload_button(cls), (name, node_id)
