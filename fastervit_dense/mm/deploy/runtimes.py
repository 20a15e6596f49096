"""The CPU runtimes that run an exported file as it is: onnxruntime and OpenVINO.

:func:`open_runtime` returns a callable ``image -> {output name: array}`` (batch dimension dropped)
for ``image`` float32 (1, 3, H, W), BGR, 0-255, whichever runtime runs it. OpenVINO reads the ONNX
file directly (no conversion step); both take any height and width.
"""
from typing import Dict, Optional

import numpy as np

__all__ = ['RUNTIMES', 'open_runtime', 'OnnxRuntime', 'OpenVINORuntime']

RUNTIMES = ('onnxruntime', 'openvino')


def _as_array(image) -> np.ndarray:
    if hasattr(image, 'numpy'):
        image = image.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(image, np.float32).reshape(1, 3, *image.shape[-2:]))


def _missing(package: str) -> ImportError:
    return ImportError(f'the {package} runtime is not installed: pip install '
                       f"'fastervit_dense[deploy]' (onnxruntime and openvino)")


class OnnxRuntime:
    """onnxruntime's CPU provider, ``threads`` intra-op threads (default: its own choice)."""

    def __init__(self, path=None, threads: Optional[int] = None, session=None):
        if session is None:
            try:
                import onnxruntime as ort
            except ImportError:
                raise _missing('onnxruntime') from None
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
        self.session = session
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_name = session.get_inputs()[0].name

    def __call__(self, image) -> Dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: _as_array(image)})
        return {name: value[0] for name, value in zip(self.output_names, values)}


class OpenVINORuntime:
    """OpenVINO on the CPU, reading the ONNX file as it is (dynamic height and width kept), in
    float32. Left to itself OpenVINO computes in bfloat16 on CPUs with bfloat16 instructions
    (AVX512-BF16 or AMX): a detector's boxes, scores and metrics then differ from the file's
    float32 results (box mAP@0.5 0.258 against 0.238 on a briefly trained demo detector, an AMD
    EPYC with AVX512-BF16), so a check of the file would measure the CPU instead."""

    def __init__(self, path, threads: Optional[int] = None):
        try:
            import openvino as ov
            import openvino.properties.hint as hints
        except ImportError:
            raise _missing('openvino') from None
        config = {hints.inference_precision: ov.Type.f32}
        if threads:
            config['INFERENCE_NUM_THREADS'] = int(threads)
        self.compiled = ov.Core().compile_model(str(path), 'CPU', config)
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    def __call__(self, image) -> Dict[str, np.ndarray]:
        results = self.request.infer([_as_array(image)])
        return {name: np.array(results[output])[0]
                for name, output in zip(self.output_names, self.compiled.outputs)}


def open_runtime(path, runtime: str = 'onnxruntime', threads: Optional[int] = None):
    """The exported file at ``path`` opened in ``runtime`` (one of :data:`RUNTIMES`)."""
    if runtime == 'onnxruntime':
        return OnnxRuntime(path, threads)
    if runtime == 'openvino':
        return OpenVINORuntime(path, threads)
    raise ValueError(f'unknown runtime {runtime!r}: choose one of {", ".join(RUNTIMES)}')
