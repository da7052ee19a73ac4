"""The shipped workflows stay in step with the nodes (the host test also runs them in a real ComfyUI)."""

import json
import os

import pytest

from helpers import NODES, has_upload_button, widget_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(ROOT, "workflows")
NAMES = sorted(n for n in os.listdir(WORKFLOWS) if n.endswith(".json"))


def load(*parts):
    with open(os.path.join(WORKFLOWS, *parts)) as f:
        return json.load(f)


def test_every_ui_workflow_has_an_api_twin():
    assert NAMES and NAMES == sorted(os.listdir(os.path.join(WORKFLOWS, "api")))


@pytest.mark.parametrize("name", NAMES)
def test_framestream_nodes_in_api_twins_use_real_inputs(name):
    for node_id, node in load("api", name).items():
        cls = NODES.get(node["class_type"])
        if cls is None:
            assert not node["class_type"].startswith("FrameStream"), node["class_type"]
            continue
        declared = cls.define_schema().inputs
        assert {i.id for i in declared if not i.optional} <= set(node["inputs"]), (name, node_id)
        assert set(node["inputs"]) <= {i.id for i in declared}, (name, node_id)


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_matches_its_twin(name):
    """Same nodes, same links and, for FrameStream nodes, the twin's widget values in the node's order. Workflows
    saved before a node gained optional widgets stay as they were saved (they must keep working)."""
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
        cls = NODES.get(node["class_type"])
        if cls is not None:
            names = widget_names(cls)
            saved = [w for w in names if w in node["inputs"]]
            assert saved == names[: len(saved)], (name, node_id)  # widgets added since are left at their defaults
            assert all(i.optional for i in cls.define_schema().inputs if i.id in names[len(saved):]), (name, node_id)
            values = [node["inputs"][w] for w in saved]
            stored = nodes[node_id].get("widgets_values", [])
            assert stored[: len(values)] == values, (name, node_id)
            assert len(stored) == len(values) + has_upload_button(cls), (name, node_id)
