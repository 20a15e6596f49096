"""Config loading, model and runner building for either framework, chosen by the config's
``default_scope`` (``mmdet`` or ``mmseg``): what the kit's train, test, export and analysis tools share.

These functions raise exceptions (the tools turn them into exit messages) and never change a config
they are given: :func:`build_model` and :func:`use_amp` work on copies."""
import copy
import os
import os.path as osp

from mmengine.config import Config

SCOPES = ('mmdet', 'mmseg')


class ConfigError(ValueError):
    """A config the kit's tools cannot run."""


def load_config(path: str, cfg_options=None, work_dir=None, launcher='none') -> Config:
    """The config at ``path`` with ``cfg_options`` merged, ready for the kit's runner: gloo and no
    device ids for distributed runs without CUDA, the RNG-state hook for exact resumes, a work
    folder. Raises FileNotFoundError, or :class:`ConfigError` for a config of another framework."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ConfigError(f'{path}: default_scope is {scope!r}; the kit runs mmdet and mmseg '
                          "configs (inherit an mmdet:: or mmseg:: base, or set default_scope)")
    cfg.launcher = launcher
    if launcher != 'none':
        _adapt_distributed_to_this_machine(cfg)
    hooks = list(cfg.get('custom_hooks', []))
    if not any(h.get('type') == 'RNGStateHook' for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='RNGStateHook')]  # exact resume (see engine/hooks)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def _adapt_distributed_to_this_machine(cfg: Config):
    """Without CUDA, distributed runs use the gloo backend and DDP without ``device_ids``
    (configs default to NCCL and GPU device ids, which fail on CPU-only machines)."""
    import torch
    if torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def prepare_scope(cfg: Config):
    """Registers the framework's modules and the kit's before the runner is built."""
    import fastervit_dense.mm  # noqa: F401
    if cfg.default_scope == 'mmdet':
        from mmdet.utils import register_all_modules, setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    else:
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)


def build_model(cfg: Config):
    """The config's model in its framework's scope, without ImageNet loading (for tools that load
    trained weights themselves or need none)."""
    from mmengine.registry import MODELS, init_default_scope
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.init_cfg = None
    prepare_scope(cfg)
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


def _init_cpu_process_group(cfg: Config):
    """mmengine's pytorch launcher calls ``torch.cuda.set_device`` unconditionally; on a machine
    without CUDA the kit starts the (gloo) process group itself, and the Runner then uses it."""
    import torch
    import torch.distributed as dist
    if cfg.launcher == 'pytorch' and not torch.cuda.is_available() and not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def build_runner(cfg: Config):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    prepare_scope(cfg)
    _init_cpu_process_group(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def amp_dtype() -> str:
    """The floating-point type ``use_amp`` trains in here: 'float16' on a GPU, else 'bfloat16'."""
    import torch
    return 'float16' if torch.cuda.is_available() else 'bfloat16'


def use_amp(cfg: Config) -> Config:
    """A copy of ``cfg`` that trains in mixed precision, as ``--amp`` asks: mmengine's
    ``AmpOptimWrapper`` (float16 with dynamic loss scaling) on a GPU; on a CPU the kit's
    ``CPUAmpOptimWrapper`` (bfloat16), over the backbone and neck only for detectors, whose heads
    call mmcv's float32-only CPU operators."""
    cfg = copy.deepcopy(cfg)
    if amp_dtype() == 'float16':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
        return cfg
    from fastervit_dense.mm.engine.optimizers import cpu_bf16_is_fast
    cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
    if cfg.default_scope == 'mmdet':
        cfg.optim_wrapper.autocast_modules = [name for name in ('backbone', 'neck')
                                              if cfg.model.get(name)]
    if not cpu_bf16_is_fast():
        import warnings
        warnings.warn('--amp on a CPU without bfloat16 instructions (AMX, AVX512-BF16): bfloat16 '
                      'is emulated there and trains slower than float32')
    return cfg


def run_tool(main, argv=None):
    """A tool's entry point: runs ``main(argv)``; a config that is missing or of another framework,
    or a dataset that does not match it, ends the process with its message instead of a
    traceback."""
    from .dataset_check import DatasetError
    try:
        return main(argv)
    except (FileNotFoundError, ConfigError, DatasetError) as error:
        raise SystemExit(str(error)) from None


def release_process_group():
    """Destroys the default process group once a run is over (a no-op outside distributed runs).
    Left to interpreter shutdown, gloo's worker threads can still hold finished work while Python
    is torn down, and a rank of a run that succeeded aborts ('terminate called without an active
    exception', exit code -6)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def set_local_rank(local_rank: int):
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)
