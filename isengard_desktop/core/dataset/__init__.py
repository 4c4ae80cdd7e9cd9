"""Photos as data: import and decode, hashing, thumbnails, captions and trigger words, dataset
checks (pure functions, Qt-free)."""
