"""Code that runs INSIDE analysis child processes (the trainer runtime's Python): face
detection, landmarks and identity embeddings with dlib (``faces``) and video files with PyAV
(``clips``), driven by ``__main__``. The GUI process never imports it."""


def reason(exc: BaseException) -> str:
    """Why a file could not be used, in words (for an event's message)."""
    if isinstance(exc, FileNotFoundError):
        return "the file is missing"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__
