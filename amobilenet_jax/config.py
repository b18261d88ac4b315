"""The base experiment config every file under configs/ starts from.

Every key the code reads is defined here, so a locked config turns a misspelt
override into an error. Model fields left as placeholders (None) take the chosen
architecture's own default (see ``amobilenet_jax.models``).
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections
from ml_collections import config_dict

SCHEDULES = ("keras", "cosine")  # optimizer.schedule
VECTORIZE_CHOICES = ("auto", "true", "false")  # --vectorize of a study


def base_config() -> ml_collections.ConfigDict:
    """The paper's recipe (section 3.1) on the built-in synthetic data."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.eval_split = "auto"  # split evaluated each epoch and by --mode eval; auto: valid if present, else test
    c.eval_flip = False  # evaluation sums the logits of each image and its mirror (test-time flip)
    # 5: the final evaluation, --mode eval and predict also vote over zoom-ins on the centre and the
    # four corners (each with its mirror under eval_flip); per-epoch evaluations stay on the whole image
    c.eval_crops = 0
    c.eval_crop_zoom = 0.9  # a crop's side as a fraction of the image's
    c.paper_table = False  # a study's table carries the paper's Table 3/4 numbers beside the measured ones

    c.model = ml_collections.ConfigDict()
    c.model.name = "amobilenet"
    c.model.width = 1.0
    c.model.dropout = config_dict.placeholder(float)
    c.model.cbam = config_dict.placeholder(bool)
    c.model.cbam_blocks = config_dict.placeholder(tuple)
    c.model.cbam_reduction = 16
    c.model.cbam_kernel = 7
    c.model.linear_depthwise = config_dict.placeholder(bool)
    c.model.depthwise_impl = "auto"  # xla | shift | shift_ffi | shift_autodiff | auto
    c.model.stem_stride = config_dict.placeholder(int)  # MobileNetV1/A-MobileNet: 2 (paper) | 1 for 48x48 inputs
    # MobileNetV1/A-MobileNet: the body as (pointwise channels, depthwise stride) pairs, one per
    # depthwise-separable block; None: the paper's 13 (models/mobilenet_v1.py BLOCKS)
    c.model.blocks = config_dict.placeholder(tuple)
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16; params stay float32
    # ImageNet backbone for a fresh run (mobilenet_v1/amobilenet, width 1.0): the file that
    # `python -m amobilenet_jax.imagenet` writes (or Keras' .h5); "" initialises at random.
    c.model.init_from = ""

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic"
    c.data.dir = ""  # the data set in its official layout (ferplus, rafdb, fer2013)
    c.data.cache_dir = ""  # prepared ArrayRecord files; default <dir>/.tfds, or ~/.cache if <dir> is read-only
    c.data.label_mode = "majority"  # ferplus training labels: majority | distribution (eval is always majority)
    c.data.image_size = 48
    c.data.num_train = 8000  # synthetic only
    c.data.num_test = 2000  # synthetic only
    c.data.difficulty = 1.0  # synthetic only
    c.data.balance = "none"  # none | oversample (every class drawn up to the largest class's size per epoch) | power
    c.data.balance_power = 0.5  # power: class c drawn n_c^(1-p) * n_max^p times an epoch (0: none, 1: oversample)
    c.data.pipeline = "device"  # device: split on the accelerator, augment in jit | grain: host-side Grain loader
    c.data.grain_workers = 2  # grain pipeline: worker processes (0: in the main process)
    c.data.on_error = "raise"  # a bad image or row: raise (one line naming file and row) | skip (count and list them)
    c.data.augment = ml_collections.ConfigDict()
    c.data.augment.rotation = 20.0  # degrees, uniform in [-r, r]
    c.data.augment.crop = 0.2  # zoom in by up to this fraction of the side
    c.data.augment.translate = 0.1  # fraction of the side
    c.data.augment.flip = True
    c.data.augment.scale_out = 0.0  # also zoom out by up to this fraction of the side (scale jitter)
    c.data.augment.erase = 0.0  # probability of erasing one random rectangle of an image (random erasing)
    c.data.augment.degrade = 0.0  # probability of degrading an image: seen small, blur, light, noise, JPEG
    c.data.augment.mixup = 0.0  # alpha of mixup's Beta(alpha, alpha) share; 0: off
    c.data.augment.cutmix = 0.0  # alpha of CutMix's Beta(alpha, alpha) share; 0: off (both on: one a batch)
    c.data.normalize_mean = 0.5  # after scaling to [0, 1]
    c.data.normalize_std = 0.5

    c.loss = ml_collections.ConfigDict()
    c.loss.center_weight = 0.01  # lambda in Eq. 10; 0 switches center loss off
    c.loss.center_update_rate = 0.5  # alpha of the center update (Eq. 9)
    c.loss.label_smoothing = 0.0  # mix the softmax target with uniform: (1 - s) * target + s / K
    # Knowledge distillation: trained run directories (config.json + weights.msgpack) or weights
    # files (a config.json beside them) whose mean softened prediction, on the same augmented
    # batch, the student also learns: (1 - w) * softmax loss + w * T^2 * cross-entropy to it.
    c.loss.distill_from = ()
    c.loss.distill_weight = 0.0  # w; 0: off
    c.loss.distill_temperature = 2.0  # T
    # batch: the teachers see each augmented batch the student sees (a forward pass each, every step);
    # stored: their prediction on each stored training image (the whole image and its mirror),
    # computed once before training and used for whatever view the student gets (no cost a step)
    c.loss.distill_views = "batch"

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 1e-4
    c.optimizer.schedule = "keras"  # keras: lr / (1 + decay * step) | cosine: warmup, then cosine to 0
    c.optimizer.decay = 1e-5  # Keras-style: lr_t = lr / (1 + decay * step)
    c.optimizer.warmup_steps = 0  # cosine only: linear warmup from lr / warmup_steps
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-7  # Keras' Adam default (the paper trained with Keras)
    c.optimizer.weight_decay = 0.0
    c.optimizer.ema_decay = 0.0  # > 0: evaluate, save and ship an exponential moving average of the weights
    c.optimizer.sam_rho = 0.0  # > 0: sharpness-aware minimisation, gradients taken this far uphill (two passes a step)

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 64
    c.train.num_epochs = 100
    c.train.num_steps = -1  # > 0 overrides num_epochs
    c.train.log_every_steps = 50
    c.train.checkpoint_every_steps = 500
    c.train.max_checkpoints = 3
    c.train.eval_every_epochs = 1
    c.train.eval_batch_size = 256
    c.train.coarse_stem_epochs = 0.0  # > 0: these first epochs with the stem at stride 2, then at model.stem_stride=1
    c.lock()  # a variant that sets a misspelt field fails here instead of adding a new one
    return c


# Fields whose value is one of a fixed set: a typo is caught before any work starts.
def _choices() -> dict[str, tuple]:
    from amobilenet_jax.data import LOADERS
    from amobilenet_jax.data.pipeline import BALANCE_MODES, PIPELINES
    from amobilenet_jax.kernels import DEPTHWISE_IMPLS
    from amobilenet_jax.models import DTYPES, MODELS

    return {
        "model.name": tuple(sorted(MODELS)),
        "model.depthwise_impl": DEPTHWISE_IMPLS,
        "model.dtype": tuple(DTYPES),
        "data.name": tuple(sorted(LOADERS)),
        "data.label_mode": ("majority", "distribution"),
        "data.balance": BALANCE_MODES,
        "data.pipeline": PIPELINES,
        "data.on_error": ("raise", "skip"),
        "optimizer.schedule": SCHEDULES,
        "eval_split": ("auto", "train", "valid", "test"),
        "eval_crops": (0, 5),
        "loss.distill_views": ("batch", "stored"),
    }


_POSITIVE = ("data.image_size", "train.batch_size", "train.eval_batch_size", "train.log_every_steps",
             "train.checkpoint_every_steps", "train.max_checkpoints", "train.eval_every_epochs")  # fmt: skip


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises a one-line ``ConfigError`` for a value outside its field's choices or range."""
    from amobilenet_jax.errors import ConfigError

    def get(dotted):
        node = config
        for part in dotted.split("."):
            node = node[part]
        return node

    for field, allowed in _choices().items():
        if get(field) not in allowed:
            raise ConfigError(f"config: {field}={get(field)!r} is not one of {', '.join(map(repr, allowed))}")
    for field in _POSITIVE:
        if not get(field) > 0:
            raise ConfigError(f"config: {field}={get(field)!r} must be positive")
    if not (config.train.num_epochs > 0 or config.train.num_steps > 0):
        raise ConfigError("config: train.num_epochs or train.num_steps must be positive")
    if not 0.0 <= config.loss.label_smoothing < 1.0:
        raise ConfigError(f"config: loss.label_smoothing={config.loss.label_smoothing!r} must be in [0, 1)")
    if config.train.coarse_stem_epochs < 0:
        raise ConfigError(f"config: train.coarse_stem_epochs={config.train.coarse_stem_epochs!r} must be >= 0")
    if config.train.coarse_stem_epochs > 0 and config.model.stem_stride != 1:
        raise ConfigError(
            f"config: train.coarse_stem_epochs={config.train.coarse_stem_epochs!r} trains the first epochs with the "
            f"stem at stride 2 and the rest at stride 1: needs model.stem_stride=1 (got {config.model.stem_stride!r})"
        )
    if not 0.0 < config.eval_crop_zoom <= 1.0:
        raise ConfigError(f"config: eval_crop_zoom={config.eval_crop_zoom!r} must be in (0, 1]")
    a = config.data.augment
    for field, value, upper in (("scale_out", a.scale_out, 1.0), ("erase", a.erase, 1.0), ("degrade", a.degrade, 1.0)):
        if not 0.0 <= value <= upper:
            raise ConfigError(f"config: data.augment.{field}={value!r} must be in [0, {upper:g}]")
    for field, value in (("data.augment.mixup", a.mixup), ("data.augment.cutmix", a.cutmix),
                         ("optimizer.sam_rho", config.optimizer.sam_rho)):  # fmt: skip
        if not value >= 0.0:
            raise ConfigError(f"config: {field}={value!r} must be >= 0 (0: off)")
    _validate_distillation(config)
    if not 0.0 <= config.data.balance_power <= 1.0:
        raise ConfigError(f"config: data.balance_power={config.data.balance_power!r} must be in [0, 1]")
    if not 0.0 <= config.optimizer.ema_decay < 1.0:
        raise ConfigError(f"config: optimizer.ema_decay={config.optimizer.ema_decay!r} must be in [0, 1) (0: none)")
    if config.optimizer.warmup_steps < 0:
        raise ConfigError(f"config: optimizer.warmup_steps={config.optimizer.warmup_steps!r} must be >= 0")
    if config.model.stem_stride is not None and config.model.stem_stride not in (1, 2):
        raise ConfigError(f"config: model.stem_stride={config.model.stem_stride!r} is not one of 1, 2")
    from amobilenet_jax.models import IMAGENET_INIT_MODELS as ARCHITECTURES

    if config.model.init_from and config.model.name not in ARCHITECTURES:
        raise ConfigError(
            f"config: model.init_from applies to {' and '.join(ARCHITECTURES)} only (the ImageNet MobileNet v1 "
            f"backbone), not model.name={config.model.name!r}"
        )
    from amobilenet_jax.models import model_kwargs
    from amobilenet_jax.models.mobilenet_v1 import BLOCKS, PAPER_CBAM_BLOCKS

    kwargs = model_kwargs(config.model, 1)  # fields the chosen architecture does not have
    if config.model.init_from and kwargs.get("blocks", BLOCKS) != BLOCKS:
        raise ConfigError(
            "config: model.init_from fills the ImageNet MobileNet v1 body, 13 blocks: leave model.blocks None"
        )
    if "blocks" in kwargs and kwargs.get("cbam"):
        cbam_blocks, count = kwargs.get("cbam_blocks", PAPER_CBAM_BLOCKS), len(kwargs["blocks"])
        if not set(cbam_blocks) <= set(range(1, count + 1)):
            raise ConfigError(f"config: model.cbam_blocks={list(cbam_blocks)} must be within model.blocks' 1..{count}")
    if not config.model.width > 0:
        raise ConfigError(f"config: model.width={config.model.width!r} must be positive")


def _validate_distillation(config: ml_collections.ConfigDict) -> None:
    from amobilenet_jax.errors import ConfigError

    loss = config.loss
    if not 0.0 <= loss.distill_weight <= 1.0:
        raise ConfigError(f"config: loss.distill_weight={loss.distill_weight!r} must be in [0, 1] (0: off)")
    if not loss.distill_temperature > 0:
        raise ConfigError(f"config: loss.distill_temperature={loss.distill_temperature!r} must be positive")
    if loss.distill_weight > 0 and not loss.distill_from:
        raise ConfigError("config: loss.distill_weight > 0 needs loss.distill_from: the teachers' run directories")
    if loss.distill_from and not loss.distill_weight > 0:
        raise ConfigError("config: loss.distill_from names teachers but loss.distill_weight is 0: set the weight")
    if loss.distill_views == "stored" and loss.distill_weight > 0 and config.data.pipeline != "device":
        raise ConfigError("config: loss.distill_views='stored' keeps the teachers' predictions on the device: "
                          "needs data.pipeline='device'")  # fmt: skip
    if not all(isinstance(path, str) and path for path in loss.distill_from):
        raise ConfigError(f"config: loss.distill_from={list(loss.distill_from)!r} must be paths")


def from_json(tree: dict, where: str) -> ml_collections.ConfigDict:
    """A locked config from a run's ``config.json``: the base config with the saved values.

    JSON has no tuples: lists become tuples (no config field holds a list). A field the
    base config lacks is an error naming it; a field the saved config predates keeps its default.
    """
    from amobilenet_jax.errors import ConfigError

    config = base_config()

    def fill(node, values, prefix):
        for key, value in values.items():
            if key not in node:
                raise ConfigError(f"{where}: unknown config field {prefix}{key} (written by another version?)")
            if isinstance(value, dict):
                fill(node[key], value, f"{prefix}{key}.")
                continue
            try:
                node[key] = tuple(value) if isinstance(value, list) else value
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: config field {prefix}{key}={value!r}: {e}") from None

    fill(config, tree, "")
    return config


def run_config_spec(workdir: str) -> str:
    """The ``--config`` value that loads a run directory's own ``config.json`` (``configs``-style spec)."""
    import os

    return f"{os.path.join(os.path.dirname(__file__), 'run_config.py')}:{os.path.join(workdir, 'config.json')}"


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Training length in steps: ``train.num_steps`` if set, else epochs x steps/epoch."""
    if config.train.num_steps > 0:
        return int(config.train.num_steps)
    return int(config.train.num_epochs * steps_per_epoch)


def config_module(spec: str):
    """``(module, variant)`` of ``path/to/config.py[:variant]``: the config file run as a module
    (its ``get_config``, and a study's ``get_sweep`` and ``get_reference``)."""
    import importlib.util
    import os

    path, _, variant = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such config file")
    module_name = "_amobilenet_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, variant or None


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path/to/config.py[:variant]`` the way ``--config`` does, locked."""
    module, variant = config_module(spec)
    config = module.get_config(variant)
    config.lock()
    return config


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` in ``argv`` (the last one wins), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def with_run_config(argv: list[str]) -> list[str]:
    """``argv`` with ``--config`` pointing at the run's own ``config.json`` when it names none
    and ``--workdir`` is a run that has one: the run directory is the source of truth."""
    if _flag_value(argv, "config") is not None:
        return argv
    workdir = _flag_value(argv, "workdir")
    import os

    if not workdir or not os.path.isfile(os.path.join(workdir, "config.json")):
        return argv
    return [argv[0], f"--config={run_config_spec(workdir)}", *argv[1:]]


# ---------------------------------------------------------------- the resume rule

# Config fields that change no result, so a run may be resumed or evaluated with other values:
# where the data lives, how it is reported, how often things happen, how long to go on. Every
# other field (model, data set and its preparation, augmentation, loss, optimizer, batch size,
# seed, input size...) defines the experiment and must match the checkpoint's config.
FREE_FIELDS = (
    "eval_split",  # which split --mode eval and the per-epoch evaluation report
    "eval_flip",  # test-time flip: how a trained model is evaluated, not how it trains
    "eval_crops",  # test-time crops: the same
    "eval_crop_zoom",
    "paper_table",  # whether a study's table carries the paper's numbers
    "data.dir",  # the same data set moved to another disk
    "data.cache_dir",  # where its prepared copy is cached
    "data.grain_workers",  # host processes of the grain pipeline: same batches, other speed
    "data.on_error",  # how bad input is met: the skip count is recorded in results.json
    "model.depthwise_impl",  # the same convolution by another kernel (e.g. moved from CPU to GPU)
    "train.num_epochs",  # train on for longer: the Keras-decay rate is a function of the step alone
    "train.num_steps",  # (not under the cosine schedule, whose rate depends on the run's length)
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.max_checkpoints",
    "train.eval_every_epochs",
    "train.eval_batch_size",
)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"width": 1.0}}`` -> ``{"model.width": 1.0}``."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _defaults() -> dict[str, Any]:
    return flatten(json.loads(base_config().to_json()))


def _with_model_defaults(flat: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Model fields left as None read as the architecture's own default: ``model.cbam=None`` and
    ``model.cbam=True`` are the same A-MobileNet."""
    from amobilenet_jax.models import MODELS

    name = flat.get("model.name", defaults.get("model.name"))
    arch_defaults = MODELS[name][1] if name in MODELS else {}
    resolved = dict(flat)
    for field, value in arch_defaults.items():
        if resolved.get(f"model.{field}") is None:
            resolved[f"model.{field}"] = json.loads(json.dumps(value))  # tuples read as config.json has them
    return resolved


def config_differences(saved: dict, current: dict) -> list[str]:
    """The experiment-defining fields in which ``current`` differs from ``saved``, as
    ``field (saved -> current)``. A field the saved config predates counts as its default."""
    defaults = _defaults()
    old, new = _with_model_defaults(flatten(saved), defaults), _with_model_defaults(flatten(current), defaults)
    free = set(FREE_FIELDS)
    if new.get("optimizer.schedule", "keras") != "keras":
        free -= {"train.num_epochs", "train.num_steps"}
    diffs = []
    for key in sorted(new):
        if key in free:
            continue
        before = old.get(key, defaults.get(key))
        if before != new[key]:
            diffs.append(f"{key} ({before!r} -> {new[key]!r})")
    return diffs


def check_resumable(saved: dict, current: dict, where: str) -> None:
    """Raises a one-line ``CheckpointError`` when ``current`` is another experiment than ``saved``."""
    diffs = config_differences(saved, current)
    if diffs:
        from amobilenet_jax.errors import CheckpointError

        raise CheckpointError(
            f"{where}: written by another experiment: {', '.join(diffs)} differ; these fields define the "
            "experiment: use a new --workdir, or leave them as the run has them (without --config, "
            "the run's config.json is used)"
        )
