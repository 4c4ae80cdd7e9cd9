"""Where training profiles live (Qt-free): the shipped ones, read-only, in the repository's
``profiles/`` folder, and the user's own in ``<data>/profiles/``.

Every save of a user profile keeps the version it replaces in
``<data>/profiles/.history/<file stem>/<UTC time>.toml``; :meth:`ProfileStore.history` lists
them and :meth:`ProfileStore.restore` brings one back (keeping the current one in the history
in turn). Deleting a user profile moves it into that history too, so nothing is lost.

All methods touch the disk: call them off the UI thread.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Iterable, Mapping

from ..fsutil import atomic_copy
from ..naming import folder_slug
from .profile_fields import FieldError
from .profiles import Profile, ProfileError, import_profile, load_profile, save_profile, validate
from .spec import FAMILIES

__all__ = ["HistoryEntry", "ProfileScan", "ProfileStore", "default_shipped_dir"]

ENV_SHIPPED = "ISENGARD_PROFILES"
HISTORY_DIR = ".history"
_STAMP = "%Y%m%dT%H%M%S_%fZ"


def default_shipped_dir(env: Mapping[str, str] | None = None) -> Path:
    """The shipped profiles: ``$ISENGARD_PROFILES``, else the repository's ``profiles/``."""
    env = os.environ if env is None else env
    override = env.get(ENV_SHIPPED)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "profiles"


@dataclass(frozen=True)
class HistoryEntry:
    """A previous version of a user profile."""

    name: str          # the profile it belongs to
    when: datetime     # when it was replaced (UTC)
    path: Path


@dataclass(frozen=True)
class ProfileScan:
    """Every profile found, shipped first; files that are not profiles, with the reason."""

    profiles: list[Profile]
    broken: list[tuple[Path, str]]


class ProfileStore:
    """Shipped (read-only) and user profiles. Names are unique across both."""

    def __init__(self, user_dir: Path, shipped_dir: Path | None = None,
                 backends: Iterable[str] | None = None) -> None:
        self.user_dir = Path(user_dir)
        self.shipped_dir = Path(shipped_dir) if shipped_dir is not None \
            else default_shipped_dir()
        self.backends = tuple(backends) if backends is not None else None

    @property
    def history_dir(self) -> Path:
        return self.user_dir / HISTORY_DIR

    # -- reading ---------------------------------------------------------------------------
    def scan(self) -> ProfileScan:
        profiles: list[Profile] = []
        broken: list[tuple[Path, str]] = []
        for folder, shipped in ((self.shipped_dir, True), (self.user_dir, False)):
            found = []
            for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
                try:
                    profile = load_profile(path)
                except (OSError, UnicodeDecodeError, ProfileError) as exc:
                    broken.append((path, str(exc)))
                    continue
                profile.shipped = shipped
                found.append(profile)
            found.sort(key=_order)
            profiles.extend(found)
        return ProfileScan(profiles, broken)

    def profiles(self) -> list[Profile]:
        return self.scan().profiles

    def get(self, name: str) -> Profile:
        """The profile called ``name`` (KeyError when there is none)."""
        for profile in self.profiles():
            if profile.name == name:
                return profile
        raise KeyError(f"There is no profile called {name!r}.")

    def _user_path(self, name: str) -> Path | None:
        for path in sorted(self.user_dir.glob("*.toml")) if self.user_dir.is_dir() else []:
            try:
                if load_profile(path).name == name:
                    return path
            except (OSError, UnicodeDecodeError, ProfileError):
                continue
        return None

    def _is_shipped(self, name: str) -> bool:
        folder = self.shipped_dir
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                if load_profile(path).name == name:
                    return True
            except (OSError, UnicodeDecodeError, ProfileError):
                continue
        return False

    # -- writing ---------------------------------------------------------------------------
    def save(self, profile: Profile) -> Profile:
        """Validate and write a user profile (atomic). The version it replaces goes to the
        history. ProfileError (with field errors) if invalid or named like a shipped one."""
        errors = validate(profile, self.backends)
        if errors:
            raise ProfileError("The profile cannot be saved: "
                               + "; ".join(map(str, errors[:3])), errors)
        if self._is_shipped(profile.name):
            message = (f"a shipped profile is called {profile.name!r}; choose another name "
                       "(shipped profiles cannot be changed)")
            raise ProfileError(f"name: {message}", [FieldError("profile.name", message)])
        path = self._user_path(profile.name)
        base_text: str | None = None
        if path is None:
            taken = [p.stem for p in self.user_dir.glob("*.toml")] \
                if self.user_dir.is_dir() else []
            path = self.user_dir / f"{folder_slug(profile.name, taken)}.toml"
        else:
            try:   # the user's comments in the file being replaced are kept
                base_text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                base_text = None
            self._archive(path)
        save_profile(profile, path, base_text)
        saved = load_profile(path)
        saved.shipped = False
        return saved

    def _archive(self, path: Path) -> Path | None:
        """Copy the current file of a user profile into its history (unless the newest
        history entry already holds exactly these bytes)."""
        if not path.is_file():
            return None
        folder = self.history_dir / path.stem
        data = path.read_bytes()
        entries = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        if entries and entries[-1].read_bytes() == data:
            return entries[-1]
        stamp = datetime.now(UTC).strftime(_STAMP)
        target = folder / f"{stamp}.toml"
        n = 1
        while target.exists():
            target = folder / f"{stamp}-{n}.toml"
            n += 1
        atomic_copy(path, target)
        return target

    def import_file(self, src: Path) -> Profile:
        """Check a ``.toml`` profile from anywhere and add it to the user profiles (an
        existing user profile of that name is replaced, its old version kept in history)."""
        profile = import_profile(Path(src), self.backends)
        profile.source = None
        return self.save(profile)

    def export(self, profile: Profile, dest: Path) -> Path:
        """Write ``profile`` to ``dest`` exactly as it is stored."""
        return save_profile(profile, Path(dest))

    def delete(self, name: str) -> Path:
        """Remove a user profile; its last version stays in the history (restore brings it
        back). KeyError if there is no such user profile."""
        path = self._user_path(name)
        if path is None:
            raise KeyError(f"There is no profile of yours called {name!r}"
                           + (" (shipped profiles cannot be deleted)."
                              if self._is_shipped(name) else "."))
        archived = self._archive(path)
        path.unlink()
        return archived or path

    # -- history ---------------------------------------------------------------------------
    def history(self, name: str) -> list[HistoryEntry]:
        """Earlier versions of the user profile ``name``, newest first."""
        path = self._user_path(name)
        stems = [path.stem] if path is not None else []
        if not stems and self.history_dir.is_dir():   # deleted: find its folder by name
            for folder in sorted(self.history_dir.iterdir()):
                if any(self._name_of(p) == name for p in folder.glob("*.toml")):
                    stems.append(folder.name)
        out = []
        for stem in stems:
            for entry in (self.history_dir / stem).glob("*.toml"):
                out.append(HistoryEntry(name, _when(entry), entry))
        out.sort(key=lambda e: (e.when, e.path.name), reverse=True)
        return out

    @staticmethod
    def _name_of(path: Path) -> str | None:
        try:
            return load_profile(path).name
        except (OSError, UnicodeDecodeError, ProfileError):
            return None

    def load_version(self, entry: HistoryEntry) -> Profile:
        return load_profile(entry.path)

    def restore(self, entry: HistoryEntry) -> Profile:
        """Make an earlier version the current one (the current one goes to the history).
        The restored profile keeps the name it is listed under."""
        old = load_profile(entry.path)
        if old.name != entry.name:
            old = replace(old, name=entry.name, source_text=None)
        old.source = None
        return self.save(old)


def _order(profile: Profile) -> tuple:
    family = FAMILIES.index(profile.family) if profile.family in FAMILIES else len(FAMILIES)
    vram = profile.vram_gb if isinstance(profile.vram_gb, (int, float)) else 0
    natural = [int(part) if part.isdigit() else part
               for part in re.split(r"(\d+)", profile.name.lower())]
    return (family, vram, natural)


def _when(path: Path) -> datetime:
    stem = path.stem.split("-")[0]
    try:
        return datetime.strptime(stem, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
