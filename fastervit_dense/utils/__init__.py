"""Helpers beside the models: ONNX export (``export``) and measurement (``benchmark``)."""
