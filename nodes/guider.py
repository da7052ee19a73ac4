"""FrameStreamUnconditionalGuider: text CFG plus LVDM's unconditional guidance on the known frames."""

from __future__ import annotations

from ..vae_core.errors import FrameStreamError
from ..vae_core.sampling.guidance import add_frame_guidance
from . import host
from .frame_conditioning import CATEGORY, FREE_KEY
from .host import io
from .registry import register


def without_known_frames(conditioning):
    """The positive conditioning with every known frame removed: the grey clip's latent and an all-ones mask
    that FrameStream's conditioning nodes stored next to the known ones."""
    free = []
    for tensor, options in conditioning:
        if FREE_KEY not in options:
            raise FrameStreamError(
                "frame_guidance needs conditioning from FrameStream Keyframe Interpolation or Extend Video (it "
                "carries the same conditioning without known frames); set frame_guidance to 0 for other conditioning"
            )
        free.append([tensor, {**options, **options[FREE_KEY]}])
    return free


class FrameGuider(host.CFGGuider):
    """The host's CFG step plus ``w (D(pos) - D(pos, no known frames))``; see vae_core.guidance.

    The CFG step is the host's own sampling function, so CFG patches (rescale, skip-layer guidance, APG and
    other pre/post-CFG hooks) apply as they do in CFGGuider; the frame-free prediction is one more call.
    """

    frame_guidance = 0.0

    def set_conds(self, positive, negative) -> None:
        conds = {"positive": positive, "negative": negative}
        if self.frame_guidance != 0.0:
            conds["free"] = without_known_frames(positive)
        self.inner_set_conds(conds)

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 (the host's signature)
        guided, positive = host.text_cfg_and_positive(self, x, timestep, model_options, seed)
        if self.frame_guidance == 0.0:
            return guided
        free = host.prediction(self, self.conds["free"], x, timestep, model_options)
        return add_frame_guidance(guided, positive, free, self.frame_guidance)


@register
class FrameStreamUnconditionalGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamUnconditionalGuider",
            display_name="FrameStream Unconditional Guider (LVDM frame guidance)",
            category=CATEGORY,
            description=(
                "A guider for SamplerCustomAdvanced: text CFG plus LVDM's unconditional guidance, which pushes each "
                "step away from what the model makes without the known frames (grey frames, nothing masked known; "
                "the CLIP-vision tokens stay): out = CFG + w (D(known) - D(no known frames)). At cfg 1 this is "
                "LVDM's (1 + w) D(known) - w D(none). Costs one more model call per step when w is not 0."),
            inputs=[
                io.Model.Input("model", tooltip="The Wan I2V / FLF2V model (optionally through Image Attention "
                                                "Strength)."),
                io.Conditioning.Input("positive", tooltip="Positive from Keyframe Interpolation or Extend Video."),
                io.Conditioning.Input("negative", tooltip="Negative from the same node."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Text guidance scale, as in KSampler (Wan: 5)."),
                io.Float.Input("frame_guidance", default=0.1, min=-2.0, max=10.0, step=0.01, tooltip=(
                    "w: how much more the known frames steer the video. LVDM uses 0.1; 0 = plain CFG (two calls "
                    "per step).")),
            ],
            outputs=[io.Guider.Output(tooltip="Connect to SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, frame_guidance):
        guider = FrameGuider(model)
        guider.frame_guidance = frame_guidance
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return io.NodeOutput(guider)
