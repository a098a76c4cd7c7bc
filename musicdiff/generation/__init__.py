"""Generation: the models of every family (``models/``), the shared noise schedule and samplers
(``schedulers``), the training loop (``training``), DDPM/DDIM/DPM-Solver++ generation (``sampling``),
trained model folders (``trained``), what a model's tensors are and how they decode to audio
(``representation``), the creative tools (``creative``) and speed timing (``speed``).

Nothing here imports evaluation code: a stage that trains or samples depends on this package, the data
and features packages, and the tracking seam only.
"""
