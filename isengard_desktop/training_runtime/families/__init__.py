"""Model families of the built-in trainer behind one contract (``base.py``): SD1.5/SDXL UNets,
Flux and Chroma transformers; ``registry.py`` maps a family key to its class."""
