"""What the kit's tests, demo and benchmarks share: reference models and checkpoints in the
published layouts (``reference``), generated datasets (``synthetic``), training batches
(``batches``). Not part of the kit's API; nothing in the core or the OpenMMLab layer imports it."""
