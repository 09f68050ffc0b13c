"""edgevad_calibration (folder ``calibration/``): calibration sets for INT8 export.

Torch-free on purpose (numpy, onnx, ONNX Runtime, TensorRT): TensorRT engines are built on the
target device, which has no torch. Filled in by the export issue.
"""
