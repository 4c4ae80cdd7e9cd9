"""Code that runs INSIDE analysis child processes (the trainer runtime's Python): face
detection, landmarks and identity embeddings with dlib (``faces``) and video files with PyAV
(``clips``), driven by ``__main__``. The GUI process never imports it."""
