"""Model names and files: the one parser of model names (`names.py`), the pip-shipped
catalog, GGUF header facts, quantized variants (`quantize.py`), adapters, Hub and Ollama files.
"""
