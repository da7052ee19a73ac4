"""The only module that imports the host (ComfyUI), with standalone fallbacks.

Everything else in the pack is pure torch; outside ComfyUI (tests, the CLI,
plain-library use) these functions quietly do nothing host-specific.
"""

from __future__ import annotations

import os

from ..vae_core.io.progress import ConsoleProgress
from ..vae_core.io.video_reader import FULL_PRECISION, FrameReading

try:  # inside ComfyUI
    import comfy.model_management as model_management
    import comfy.patcher_extension as patcher_extension
    import comfy.samplers as samplers
    import comfy.utils as comfy_utils
    import folder_paths
    from comfy_api.latest import ComfyExtension, io

    AVAILABLE = True
    CFGGuider = samplers.CFGGuider
    APPLY_MODEL = patcher_extension.WrappersMP.APPLY_MODEL
    OUTER_SAMPLE = patcher_extension.WrappersMP.OUTER_SAMPLE
except ImportError:  # standalone
    from . import standalone_io as io

    model_management = patcher_extension = samplers = comfy_utils = folder_paths = None
    AVAILABLE = False
    ComfyExtension = io.ComfyExtension
    APPLY_MODEL, OUTER_SAMPLE = "apply_model", "outer_sample"

    class CFGGuider:
        """Stand-in base so the guider node imports outside the host; sampling with it needs the host."""

        def __init__(self, model_patcher) -> None:
            self.model_patcher, self.cfg, self.original_conds = model_patcher, 1.0, {}

        def inner_set_conds(self, conds: dict) -> None:
            self.original_conds.update(conds)

        def set_cfg(self, cfg: float) -> None:
            self.cfg = cfg

PREVIEW_SIZE = 512


def _preview(frame):
    """The newest frame as the host's progress-bar preview (JPEG, at most PREVIEW_SIZE px)."""
    from PIL import Image  # the host's own dependency

    pixels = frame.mul(255).add_(0.5).clamp_(0, 255).byte().numpy()
    return ("JPEG", Image.fromarray(pixels), PREVIEW_SIZE)


class AnimatedPreview:
    """Frames that save as one looping animated WebP: what the host's preview sender calls ``save`` on (it
    takes any image-like object when no size limit is given). Vue nodes (Nodes 2.0) show it moving in the
    sampler node; on the classic canvas, which draws an image's first frame, the pack's web extension
    (js/whole_clip_preview.js) plays it where the browser has ImageDecoder (https or localhost)."""

    def __init__(self, frames, fps: float) -> None:
        self.frames, self.fps = frames, fps

    def save(self, fp, format=None, **_):
        from PIL import Image

        images = [Image.fromarray(frame) for frame in self.frames.numpy()]
        images[0].save(fp, format="WEBP", save_all=True, append_images=images[1:], loop=0, quality=80,
                       duration=max(1, round(1000 / self.fps)))


def show_frame(done: int, total: int, frame) -> None:
    """``frame`` (``[H, W, 3]`` in [0, 1]) as the running node's preview, its bar at ``done`` of ``total``."""
    if AVAILABLE:
        comfy_utils.ProgressBar(total).update_absolute(done, total, _preview(frame))


def show_preview(step: int, total: int, frames, fps: float) -> None:
    """``frames`` (``[T, h, w, 3]`` uint8) as the running node's preview after ``step`` of ``total``."""
    if AVAILABLE:
        comfy_utils.ProgressBar(total).update_absolute(step + 1, total, ("WEBP", AnimatedPreview(frames, fps), None))


def around_sampling(patcher, key: str, wrap_callback) -> None:
    """Makes every sampler run of ``patcher`` call ``wrap_callback(guider, callback)``'s callback instead of its
    own ``callback(step, x0, x, total_steps)`` (x0: the denoised prediction, in the model's latent space).
    Chains with other nodes' wrappers."""

    def wrapper(executor, *args, **kwargs):
        args = list(args)
        if "callback" in kwargs:
            kwargs["callback"] = wrap_callback(executor.class_obj, kwargs["callback"])
        else:  # (noise, latent_image, sampler, sigmas, denoise_mask, callback, ...)
            args[5] = wrap_callback(executor.class_obj, args[5])
        return executor(*args, **kwargs)

    patcher.add_wrapper_with_key(OUTER_SAMPLE, key, wrapper)


def around_each_sampling(patcher, key: str, around) -> None:
    """Makes every sampler run of ``patcher`` go through ``around(guider, sampler, latent_image, run)``, which
    calls ``run()`` (the sampling, returning its output) and returns what it gives. Chains with other nodes'
    wrappers."""

    def wrapper(executor, noise, latent_image, sampler, *args, **kwargs):
        return around(executor.class_obj, sampler, latent_image,
                      lambda: executor(noise, latent_image, sampler, *args, **kwargs))

    patcher.add_wrapper_with_key(OUTER_SAMPLE, key, wrapper)


def on_each_model_call(patcher, key: str, see) -> None:
    """Calls ``see(x, sigma, transformer_options)`` before every call of the patched model: ``x`` as the model
    gets it (the sampler's latent, in the model's latent space; one batch per conditioning in
    ``transformer_options["cond_or_uncond"]``). Chains with other nodes' wrappers."""

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006
        see(x, float(t.max()), transformer_options)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    patcher.add_wrapper_with_key(APPLY_MODEL, key, wrapper)


def warn(message: str) -> None:
    """A warning in the host's log (the console ComfyUI runs in), or on stderr standalone."""
    import logging

    logging.getLogger("FrameStream").warning(message)


class Progress(ConsoleProgress):
    """The host's progress bar with a preview of the newest frame, plus a line with ETA on the console.

    Each report also raises the host's interrupt, so a cancelled run stops within one step.
    """

    def __init__(self, label: str) -> None:
        super().__init__(f"FrameStream {label}")
        self.bar = None

    def __call__(self, done: int, total: int, preview=None) -> None:
        if AVAILABLE:
            model_management.throw_exception_if_processing_interrupted()
            if self.bar is None:
                self.bar = comfy_utils.ProgressBar(total)
            self.bar.update_absolute(done, total, _preview(preview) if preview is not None else None)
        super().__call__(done, total)


def load_for_inference(host_vae, memory_required: int) -> None:
    """Asks the host's memory manager for room (it may evict other models) and to load the VAE fully.

    The host may still keep weights elsewhere (``--novram``, dynamic loading);
    the caller checks where they ended up.
    """
    if AVAILABLE and hasattr(host_vae, "patcher"):
        model_management.load_models_gpu([host_vae.patcher], memory_required=memory_required, force_full_load=True)


def free_memory(memory_required: int, device) -> None:
    """Makes room for a model the host does not manage (FrameStream's own loaded VAEs)."""
    if AVAILABLE:
        model_management.free_memory(memory_required, device)


def free_bytes(device) -> int | None:
    """What the host reports free on ``device`` (None standalone: the core asks the device itself)."""
    return model_management.get_free_memory(device) if AVAILABLE else None


APPROX = "vae_approx"  # the host's folder of tiny preview decoders (TAESD, TAEHV ...), listed as vae_approx/NAME


def vae_files() -> list[str]:
    """The files in the host's ``models/vae`` folders, then its ``models/vae_approx`` safetensors files as
    ``vae_approx/NAME`` (the folders under ./models standalone)."""
    return _files("vae") + [f"{APPROX}/{name}" for name in _files(APPROX) if name.endswith(".safetensors")]


def _files(kind: str) -> list[str]:
    if AVAILABLE:
        return folder_paths.get_filename_list(kind) if kind in folder_paths.folder_names_and_paths else []
    folder = os.path.abspath(os.path.join("models", kind))
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def vae_path(name: str) -> str:
    kind, _, rest = name.partition("/")
    kind, name = (APPROX, rest) if kind == APPROX and rest and rest in _files(APPROX) else ("vae", name)
    if AVAILABLE:
        return folder_paths.get_full_path_or_raise(kind, name)
    return os.path.abspath(os.path.join("models", kind, name))


def vae_device_and_dtype():
    """Where and in what precision the host runs VAEs (its --cpu-vae, --fp16-vae... flags); CPU fp32 standalone."""
    import torch

    if not AVAILABLE:
        return torch.device("cpu"), torch.float32
    device = model_management.vae_device()
    return device, model_management.vae_dtype(device, [torch.float16, torch.bfloat16, torch.float32])


def version() -> tuple[int, ...] | None:
    """The running host's version (``comfyui_version``), or None standalone or where it does not say."""
    try:
        from comfyui_version import __version__
        return tuple(int(part) for part in __version__.split(".")[:3])
    except (ImportError, ValueError):
        return None


def video_reading() -> FrameReading:
    """How the running host's Load Video turns a file's frames into floats, so that FrameStream's file encoder
    gives what Load Video -> VAE Encode gives: 8-bit RGB before 0.20; float at the file's bit depth since
    (8-bit full-range formats still as bytes, and rotation applied, since 0.21; unaligned widths padded since
    0.25). A host that does not say its version, and standalone use, read as the newest host does."""
    found = version() if AVAILABLE else None
    if found is None:
        return FULL_PRECISION
    return FrameReading(float_frames=found >= (0, 20), eight_bit_as_bytes=found >= (0, 21),
                        align=32 if found >= (0, 25) else 0, rotate=found >= (0, 21))


def output_directory() -> str:
    return folder_paths.get_output_directory() if AVAILABLE else os.path.abspath("output")


def input_directory() -> str:
    return folder_paths.get_input_directory() if AVAILABLE else os.path.abspath("input")


def video_result(path: str):
    """The host's VIDEO for a finished file (core Save Video and previews accept it); the path standalone."""
    try:
        from comfy_api.latest import InputImpl
    except ImportError:
        return path
    return InputImpl.VideoFromFile(path)


def before_each_model_call(patcher, key: str, note) -> None:
    """Calls ``note(model_sampling, sigma)`` before every call of the patched model, with the model's sampling
    settings at that moment (after any ModelSampling node placed later in the graph). Chains with other
    nodes' wrappers instead of replacing them."""

    def wrapper(executor, x, t, *args, **kwargs):
        note(executor.class_obj.model_sampling, float(t.max()))
        return executor(x, t, *args, **kwargs)

    patcher.add_wrapper_with_key(APPLY_MODEL, key, wrapper)


def text_cfg_and_positive(guider, x, sigma, model_options: dict, seed):
    """The host's own CFG step (its batching, calc-cond-batch, pre-CFG, CFG and post-CFG hooks all apply)
    and the positive prediction it used."""
    seen = {}

    def keep_positive(args):
        seen["positive"] = args["cond_denoised"]
        return args["denoised"]

    options = {**model_options,
               "sampler_post_cfg_function": [*model_options.get("sampler_post_cfg_function", []), keep_positive]}
    guided = samplers.sampling_function(guider.inner_model, x, sigma, guider.conds.get("negative"),
                                        guider.conds.get("positive"), guider.cfg, model_options=options, seed=seed)
    return guided, seen["positive"]


def prediction(guider, conditioning, x, sigma, model_options: dict):
    """The model's denoised prediction for one more conditioning."""
    return samplers.calc_cond_batch(guider.inner_model, [conditioning], x, sigma, model_options)[0]
