# A global-embedding model with a ViT-B/16 backbone (mmpretrain's
# VisionTransformer by scope) trained with the Graph Sampler on Market-1501,
# tested on CUHK03-NP (detected) and MSMT17. 384x128 input -> 24 x 8 patches
# of 16 pixels; the final class token (768-d) -> BNNeck -> L2-normalised
# embedding, cosine matching; batch-hard triplet (margin 0.3) and
# label-smoothed identity losses. Same data, batches and GS schedule as
# configs/gs_r50_ibn_global_market.py. Not trained by us (the datasets
# cannot be downloaded on our CI machines).
#
# The ImageNet weights are read from a local mmpretrain checkpoint of
# ViT-B/16 (keys 'backbone.*'; the position embeddings are resized to the
# 24 x 8 grid on loading), e.g. from the mmpretrain model zoo:
#   checkpoints/vit-base-p16_in21k-pre-3rdparty_ft-in1k-384_20210928-98e8652b.pth
_base_ = ['./gs_r50_ibn_global_market.py']

pretrained = ('checkpoints/'
              'vit-base-p16_in21k-pre-3rdparty_ft-in1k-384_20210928-98e8652b'
              '.pth')

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='b',
        img_size=(384, 128),
        patch_size=16,
        drop_path_rate=0.1,
        out_type='cls_token',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    # the class token needs no pooling: the head takes [B, 768] as it is
    head=dict(in_channels=768, pooling='avg'))

# Transformers: AdamW, lr 3.5e-4 for the new layers and x0.1 for the
# backbone, no weight decay on norms, biases and tokens; clipping as before.
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=3.5e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0,
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
