"""``actionnet-train``: fine-tune an action model on a folder of labelled clips, then deploy it.

Layout, one job per module: :mod:`.data` (what the clips are: folders, CSV lists, the split,
checks before training), :mod:`.clips` (how a clip is cut and prepared: the model's stride and
the runtime's own frame preparation), :mod:`.models` (architectures, checkpoints, the new head,
what is trained), :mod:`.loop` (optimiser, schedule, checkpoints, resume), :mod:`.report`
(metrics JSON and pictures), :mod:`.cli` (wires them).
"""
