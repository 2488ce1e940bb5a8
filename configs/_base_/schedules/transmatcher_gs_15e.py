# TransMatcher-GS schedule of the public code: SGD (momentum 0.9, nesterov,
# weight decay 5e-4), lr 0.005 for the new layers (neck, encoder, matcher)
# and x0.1 for the backbone, gradient-norm clipping at 4, decay x0.1 at
# epoch 10, 15 epochs. Steps with a NaN/inf loss are skipped and counted.
_base_ = ['./qaconv_gs_15e.py']

optim_wrapper = dict(optimizer=dict(lr=0.005), clip_grad=dict(max_norm=4))
