"""Evidence for ``dino2mm.py``: NVlabs' own DINO code and the converted mmdet model agree.

    python tools/model_converters/dino_parity.py --official PATH [--size 333x517] [--seed 0]
        [--write-listing tests/data/dino_official_layout.txt]

PATH: a checkout of NVlabs/FasterViT (or its ``downstream/object_detection/dino`` folder). The
script imports that code from PATH; the kit never depends on it. It

1. builds the official detector in its published configuration
   (``config/DINO/DINO_4scale_faster_vit_4_21k_224.py``) on the CPU, with random weights drawn so
   that the compared detections are not near-ties (every constant tensor perturbed, layer scales
   raised so the attention paths count, BatchNorm statistics drawn, the content queries set to
   zero so a proposal's rank does not decide its query; see ``randomise``), and the 11 rows of
   category ids that are not COCO classes switched off (their scores would otherwise enter the
   official top-k, which the 80-class mmdet model cannot reproduce);
2. saves its state dict as the official training script does (``{'model', 'args'}``), converts the
   file with the kit's converter (the safe reader, the key mapping, the strict check against the
   kit's config) and loads it into the config's mmdet model;
3. runs both on one random image of a non-square size and compares the 100 best detections of the
   official model (boxes clipped to the image, as mmdet clips its own) with mmdet's: same COCO
   category, box IoU >= 0.99, score within 1e-3. It prints
   the score gaps at the cut-offs (the encoder's 900 proposals, the 100 compared) so that a reader
   sees the comparison is not decided by rounding. Exit status 0 when they agree.

``--write-listing`` also writes the official layout's keys and shapes, which the kit's tests check
the key mapping against without the official code.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile
import types

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KIT_CONFIG = osp.join(ROOT, 'configs/fastervit/dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py')
OFFICIAL_CONFIG = 'config/DINO/DINO_4scale_faster_vit_4_21k_224.py'
TOP = 100
BOX_IOU, SCORE_TOLERANCE = 0.99, 1e-3
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def dino_folder(path):
    for candidate in (path, osp.join(path, 'downstream', 'object_detection', 'dino')):
        if osp.isfile(osp.join(candidate, 'models', 'dino', 'fastervit.py')):
            return osp.abspath(candidate)
    raise SystemExit(f'{path}: not a checkout of NVlabs/FasterViT (no downstream/object_detection/'
                     'dino/models/dino/fastervit.py); clone https://github.com/NVlabs/FasterViT')


def import_official(folder):
    """The official package, importable on a CPU: its compiled deformable-attention op is replaced
    by the pure-PyTorch version that the same code ships (``ms_deform_attn_core_pytorch``)."""
    sys.path.insert(0, folder)
    sys.modules.setdefault('MultiScaleDeformableAttention',
                           types.ModuleType('MultiScaleDeformableAttention'))
    from models.dino.ops.functions import ms_deform_attn_func as ops

    def apply(value, shapes, level_start_index, locations, weights, im2col_step):
        return ops.ms_deform_attn_core_pytorch(value, shapes, locations, weights)

    ops.MSDeformAttnFunction.apply = staticmethod(apply)
    import models  # noqa: F401  (registers the builders)
    from models.dino import fastervit
    from models.registry import MODULE_BUILD_FUNCS
    from util.misc import NestedTensor
    from util.slconfig import SLConfig
    return MODULE_BUILD_FUNCS, SLConfig, fastervit, NestedTensor


def build_official(folder, work_dir):
    build_funcs, SLConfig, fastervit, nested_tensor = import_official(folder)
    cfg = SLConfig.fromfile(osp.join(folder, OFFICIAL_CONFIG))
    args = argparse.Namespace(**cfg._cfg_dict.to_dict())
    args.device = 'cpu'
    # The builder loads ImageNet backbone weights from args.backbone_dir: give it random ones.
    backbone = fastervit.build_fastervit(args.backbone,
                                         out_indices=tuple(args.return_interm_indices))
    torch.save({'state_dict': backbone.state_dict()},
               osp.join(work_dir, 'fastervit_4_21k_224_w14.pth.tar'))
    args.backbone_dir = work_dir
    model, _, postprocessors = build_funcs.get(args.modelname)(args)
    return model.eval(), postprocessors['bbox'], args, nested_tensor


@torch.no_grad()
def randomise(model, seed):
    """Weights under which the comparison means something (see the module docstring)."""
    from fastervit_dense.mm.dino_checkpoint import COCO_CATEGORY_IDS
    generator = torch.Generator().manual_seed(seed)

    def noise(tensor, std):
        return torch.randn(tensor.shape, generator=generator) * std

    for name, param in model.named_parameters():
        if name.endswith(('gamma3', 'gamma4', 'gamma1', 'gamma2')):
            param.copy_(0.1 + noise(param, 0.02))
        elif param.numel() == 1 or param.std() == 0:
            param.add_(noise(param, 0.02))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(noise(module.running_mean, 0.1))
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape,
                                                      generator=generator))
    model.transformer.tgt_embed.weight.zero_()
    not_classes = [i for i in range(model.label_enc.weight.shape[0] - 1)
                   if i not in COCO_CATEGORY_IDS]
    heads = list(model.class_embed) + [model.transformer.enc_out_class_embed]
    for head in heads:
        head.bias[not_classes] = -1e4


def official_detections(model, postprocess, nested_tensor, image):
    """Official inference on ``image`` (1, 3, H, W, BGR 0-255, normalised as its dataset does):
    the 300 best detections, and the encoder's proposal scores (for the cut-off gap)."""
    rgb = image[:, [2, 1, 0]] / 255.0
    rgb = (rgb - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    mask = torch.zeros(1, *image.shape[-2:], dtype=torch.bool)
    proposals = []
    hook = model.transformer.enc_out_class_embed.register_forward_hook(
        lambda module, inputs, output: proposals.append(output.max(-1)[0].flatten()))
    with torch.no_grad():
        outputs = model(nested_tensor(rgb, mask))
    hook.remove()
    height, width = image.shape[-2:]
    result = postprocess(outputs, torch.tensor([[height, width]]))[0]
    # mmdet clips its boxes to the image (DETRHead._predict_by_feat_single); the official
    # post-processing does not.
    result['boxes'][:, 0::2] = result['boxes'][:, 0::2].clamp(0, width)
    result['boxes'][:, 1::2] = result['boxes'][:, 1::2].clamp(0, height)
    all_scores = outputs['pred_logits'].sigmoid().flatten().sort(descending=True).values
    return dict(dets=torch.cat([result['boxes'], result['scores'][:, None]], 1).numpy(),
                labels=result['labels'].numpy()), proposals[0], all_scores


def gap(sorted_scores, k):
    return float(sorted_scores[k - 1] - sorted_scores[k])


def checkout_commit(path):
    import subprocess
    try:
        return subprocess.run(['git', '-C', path, 'rev-parse', 'HEAD'], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_listing(state_dict, path, official_path):
    commit = checkout_commit(official_path)
    source = f'NVlabs/FasterViT at {commit}' if commit else osp.abspath(official_path)
    with open(path, 'w') as f:
        f.write(f'# keys and shapes of the official DINO-4scale FasterViT-4-21K-224 state dict '
                f'({OFFICIAL_CONFIG}),\n# written by tools/model_converters/dino_parity.py from '
                f'{source}\n')
        for key, value in state_dict.items():
            f.write(f'{key}\t{",".join(str(s) for s in value.shape)}\n')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official', required=True, help='checkout of NVlabs/FasterViT')
    parser.add_argument('--config', default=KIT_CONFIG, help='the kit\'s mmdet config')
    parser.add_argument('--size', default='333x517', help='image size HxW')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--write-listing', default=None, help='write the official keys and shapes')
    parser.add_argument('--keep', default=None, help='folder to keep the random official '
                        'checkpoint and its conversion in (for further checks)')
    args = parser.parse_args(argv)
    from fastervit_dense.utils.sizes import parse_size
    height, width = parse_size(args.size)
    folder = dino_folder(args.official)
    torch.manual_seed(args.seed)

    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from fastervit_dense.mm.deploy.verify import (Cutoffs, framework_detections, match_detections,
                                                  random_image)
    from fastervit_dense.mm.dino_checkpoint import COCO_CATEGORY_IDS, convert_dino_file

    with tempfile.TemporaryDirectory() as work_dir:
        official, postprocess, official_args, nested_tensor = build_official(folder, work_dir)
        randomise(official, args.seed)
        state_dict = official.state_dict()
        if args.write_listing:
            write_listing(state_dict, args.write_listing, args.official)
            print(f'wrote {args.write_listing}: {len(state_dict)} keys')
        source = osp.join(work_dir, 'DINO_4scale_faster_vit_4_21k_224_random.pth')
        torch.save({'model': state_dict, 'args': official_args}, source)
        converted = osp.join(work_dir, 'converted.pth')
        convert_dino_file(source, converted, args.config)
        if args.keep:
            import shutil
            os.makedirs(args.keep, exist_ok=True)
            for path in (source, converted):
                shutil.copy(path, args.keep)
            print(f'kept {osp.basename(source)} and {osp.basename(converted)} in {args.keep}')

        register_all_modules()
        import fastervit_dense.mm  # noqa: F401
        cfg = Config.fromfile(args.config)
        cfg.model.backbone.init_cfg = None
        detector = MODELS.build(cfg.model)
        from fastervit_dense.mm.checkpoint import load_config_checkpoint
        load_config_checkpoint(detector, converted)  # strictly, through the kit's one loader
        print(f'converted checkpoint loads strictly into {osp.basename(args.config)}')
        detector.eval()

        image = random_image(height, width, seed=args.seed)
        reference, proposals, scores = official_detections(official, postprocess, nested_tensor,
                                                           image)
        ours = framework_detections(detector, image)

    ours['labels'] = np.asarray(COCO_CATEGORY_IDS)[ours['labels']]
    # the TOP best of each side; one side's detection missing from the other's only at that cut
    # (a near-tie in score) would count as a tie, not a disagreement
    top, ours = ({k: v[np.argsort(-side['dets'][:, 4], kind='stable')[:TOP]]
                  for k, v in side.items() if k in ('dets', 'labels')}
                 for side in (reference, ours))
    report = match_detections(top, ours, box_iou=BOX_IOU, score_tolerance=SCORE_TOLERANCE,
                              cutoffs=Cutoffs(max_per_img=TOP))
    proposals = proposals.sort(descending=True).values
    print(f'{height}x{width}: {report["matched"]}/{len(top["dets"])} of the official model\'s best '
          f'detections match mmdet\'s {report["reference"]} best (same category, box IoU >= '
          f'{BOX_IOU}, '
          f'score within {SCORE_TOLERANCE:g}); worst box IoU {report["worst_box_iou"]:.6f}, worst '
          f'score difference {report["worst_score_difference"]:.2e}')
    print(f'score gaps at the cut-offs: encoder proposal 900/901 {gap(proposals, 900):.2e}, '
          f'detection {TOP}/{TOP + 1} {gap(scores, TOP):.2e}')
    return 0 if report['agree'] else 1


if __name__ == '__main__':
    sys.exit(main())
