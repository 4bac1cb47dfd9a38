"""Export: quantized ONNX and Core ML artifacts that must re-pass the bundle's receipt.

Needs the `export` extra: pip install 'intakegate[export]'.
"""
