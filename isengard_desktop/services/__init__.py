"""QObject services (no widgets): the only owners of child processes, asyncio tasks and executors.
Feature packages: ``training``, ``generation``; single modules for the library, settings, thumbnails."""
