/**
 * Plays FrameStream's whole-clip previews on the classic (LiteGraph) canvas.
 *
 * FrameStream Whole-Clip Preview sends each sampling step's preview as ONE animated WebP through the host's
 * progress-bar preview, shown by the sampler node. The Vue node view shows it in an <img>, which plays; the
 * classic canvas paints `node.imgs[0]` with drawImage, which takes only the first frame of an animated image.
 * So for each animated preview this decodes the frames with WebCodecs' ImageDecoder and cycles `node.imgs`
 * through them at the animation's own frame durations, until a newer preview or another image takes the
 * node's place. Static previews, the Vue node view and browsers without ImageDecoder (it needs a secure
 * context: https or localhost) are left as they are.
 */
import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";

const WAIT_MS = 100; // how often to look again while the frontend has yet to show the preview on the node
const stopPlaying = new WeakMap(); // node -> stops its animation, or the decoding of its next one

/** RIFF/WEBP with a VP8X header whose animation flag is set. */
function isAnimatedWebp(bytes) {
  const tag = (at) => String.fromCharCode(...bytes.subarray(at, at + 4));
  return bytes.length > 20 && tag(0) === "RIFF" && tag(8) === "WEBP" && tag(12) === "VP8X" && (bytes[20] & 2) !== 0;
}

/** Each frame as an <img> (what the canvas and the node's context menu expect: a data URL, so nothing to
 * revoke) and how long it shows, in ms. */
async function decodeFrames(bytes) {
  const decoder = new ImageDecoder({ data: bytes, type: "image/webp" });
  try {
    await decoder.tracks.ready;
    const frames = [];
    for (let index = 0; index < decoder.tracks.selectedTrack.frameCount; index++) {
      const { image } = await decoder.decode({ frameIndex: index });
      const canvas = document.createElement("canvas");
      canvas.width = image.displayWidth;
      canvas.height = image.displayHeight;
      canvas.getContext("2d").drawImage(image, 0, 0);
      const ms = image.duration ? image.duration / 1000 : 125;
      image.close();
      const img = new Image();
      img.src = canvas.toDataURL();
      await img.decode();
      frames.push({ img, ms });
    }
    return frames;
  } finally {
    decoder.close();
  }
}

/** The node an execution id names and, when it sits in subgraphs, the subgraph nodes around it (all show it). */
function nodesShowing(executionId) {
  const nodes = [];
  let graph = app.graph;
  for (const id of String(executionId).split(":")) {
    const node = graph?.getNodeById(id);
    if (!node) break;
    nodes.push(node);
    graph = node.subgraph;
  }
  return nodes;
}

/** The URL of the preview the frontend holds for a node (`app.nodePreviewImages`, by node locator id). */
function previewUrlOf(node) {
  const locator = node.graph && node.graph !== app.graph ? `${node.graph.id}:${node.id}` : String(node.id);
  return app.nodePreviewImages?.[locator]?.[0];
}

/** Cycles the node's image through the frames while it shows this preview (the frontend's first-frame image
 * of it, or our last frame). */
function play(node, frames, previewUrl) {
  let index = 0;
  let timer;
  let shownFrame;
  const stop = () => clearTimeout(timer);
  const tick = () => {
    if (window.LiteGraph?.vueNodesMode || node.graph?.getNodeById(node.id) !== node) return; // Vue view, or removed
    const shown = node.imgs?.[0];
    if (shown === undefined || (shown !== shownFrame && shown.src !== previewUrl)) {
      // the frontend puts a new preview in node.imgs when it next draws the node: wait for that while the
      // preview is still the node's, else another image has taken its place
      if (previewUrlOf(node) === previewUrl) timer = setTimeout(tick, WAIT_MS);
      return;
    }
    shownFrame = frames[index].img;
    node.imgs = [shownFrame];
    app.canvas?.setDirty(true, false);
    timer = setTimeout(tick, frames[index].ms);
    index = (index + 1) % frames.length;
  };
  stopPlaying.set(node, stop);
  tick();
}

async function onPreview({ detail }) {
  const nodes = nodesShowing(detail.displayNodeId ?? detail.nodeId);
  let cancelled = false; // by a newer preview for these nodes, while this one is read and decoded
  for (const node of nodes) {
    stopPlaying.get(node)?.();
    stopPlaying.set(node, () => { cancelled = true; });
  }
  if (!nodes.length || window.LiteGraph?.vueNodesMode || typeof ImageDecoder === "undefined") return;
  await Promise.resolve(); // the frontend's own listener of this event has run: it holds the preview's URL
  const previewUrls = nodes.map(previewUrlOf);
  const bytes = new Uint8Array(await detail.blob.arrayBuffer());
  if (cancelled || !isAnimatedWebp(bytes)) return;
  const frames = await decodeFrames(bytes).catch((error) => {
    console.warn("FrameStream: could not decode an animated preview", error);
    return [];
  });
  if (cancelled || !frames.length) return;
  nodes.forEach((node, at) => previewUrls[at] && play(node, frames, previewUrls[at]));
}

app.registerExtension({
  name: "FrameStream.WholeClipPreview",
  setup() {
    api.addEventListener("b_preview_with_metadata", onPreview);
  },
});
