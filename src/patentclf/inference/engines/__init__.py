"""Engines: what runs the model's forward pass. Each turns token-id windows into the raw logits of
every head output (``batches`` groups the windows into calls, ``logits`` runs one call); the
``Classifier`` does everything before (text, windows) and after (heads, calibration, formatting).

* ``torch``: the bundle's model in this process (CPU, CUDA or MPS).
* ``vllm``: a vLLM server running the bundle's merged export (see ``engines/vllm.py``).
"""
