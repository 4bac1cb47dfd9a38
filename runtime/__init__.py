"""The local router: numpy, onnxruntime and tokenizers only; torch only when asked for."""
