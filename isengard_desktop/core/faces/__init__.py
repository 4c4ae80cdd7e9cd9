"""Face analysis data, Qt-free: what the analysis child measures per photo (``records``), the
numbers it derives from a face (``measures``), the content-hash cache (``cache``) and the
dataset findings built from them (``checks``). The maths of identity is ``core/identity.py``."""
