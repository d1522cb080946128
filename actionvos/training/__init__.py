"""Training-side toolchain of ActionVOS (spec §5–§8, §10).

Modules (import what you need; nothing heavy is imported here):
    box_ops        cxcywh/xyxy conversion, (generalised) IoU, mask → box
    matcher        single lowest-cost query matcher (spec §7)
    losses         ActionVOSCriterion: focal/L1/GIoU/weighted-mask/dice/positive losses (spec §7)
    metrics        p/n-mIoU, p/n-cIoU, gIoU, Acc over palette PNG folders (spec §10)
    visor_labels   prepare-visor: action-aware labels and weight codes from VISOR (spec §6)
    dataset        ActionVOSDataset over the released layout + collate (spec §8)
    transforms     clip augmentations without torchvision (spec §8)
"""
