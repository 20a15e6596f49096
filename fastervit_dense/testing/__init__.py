"""What the kit's tests and its reference benchmarks share: reference models and checkpoints in the
published layouts (``reference``, with the official ``fastervit`` package imported when asked for),
loopback servers and hand-filled caches (``servers``). Not part of the kit's API and not in its
wheel: nothing in the core, the OpenMMLab layer, the demo or the tools a user runs imports it."""
