"""Windows Job Objects: one child's whole process tree, ended by one call or with the app (Qt-free).

Windows has no process groups to signal: a trainer's DataLoader workers or ComfyUI's own
children outlive a ``TerminateProcess`` of the child the app started. A Job Object holds the
child and every process it starts after it was assigned; ``TerminateJobObject`` ends them
all, and with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`` Windows itself ends them when the job's
last handle closes, so the tree dies with the app even when the app is killed or crashes.

:class:`ProcessJob` is what :class:`~.child_process.ChildProcess` uses on Windows. The system
calls go through a :class:`JobApi`; :class:`Kernel32JobApi` makes them with ``ctypes`` (only
on Windows); tests pass a fake one and check the call sequence on any OS.

Known gap: the child is assigned when QProcess reports it started, so a process it starts in
its first instant (before the assignment) is not in the job; a Python child starts no process
that early.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import wintypes
from typing import Any, Protocol

from loguru import logger

from ..core.platform_support import KILLED_BY_APP

__all__ = ["JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE", "KILLED_EXIT_CODE", "ExtendedLimitInformation",
           "JobApi", "Kernel32JobApi", "ProcessJob"]

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100
# The exit code the tree gets: the one QProcess.kill() gives on Windows, which QProcess reports
# as a crash exit, so a job-ended child reads like a killed one.
KILLED_EXIT_CODE = KILLED_BY_APP


class JobApi(Protocol):
    """The Job Object calls :class:`ProcessJob` needs (handles are ints; 0 is none)."""

    def create_kill_on_close_job(self) -> int: ...
    def open_process(self, pid: int) -> int: ...
    def assign(self, job: int, process: int) -> None: ...
    def terminate(self, job: int, exit_code: int) -> None: ...
    def close(self, handle: int) -> None: ...


class _BasicLimitInformation(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class _IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class ExtendedLimitInformation(ctypes.Structure):
    """``JOBOBJECT_EXTENDED_LIMIT_INFORMATION`` (144 bytes on 64-bit Windows)."""

    _fields_ = [
        ("BasicLimitInformation", _BasicLimitInformation),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class Kernel32JobApi:
    """:class:`JobApi` through kernel32 (Windows only: raises OSError elsewhere)."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError("Job Objects exist only on Windows")
        k32: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        k32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
        k32.CreateJobObjectW.restype = wintypes.HANDLE
        k32.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int,
                                                ctypes.POINTER(ExtendedLimitInformation),
                                                wintypes.DWORD]
        k32.SetInformationJobObject.restype = wintypes.BOOL
        k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        k32.OpenProcess.restype = wintypes.HANDLE
        k32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
        k32.AssignProcessToJobObject.restype = wintypes.BOOL
        k32.TerminateJobObject.argtypes = [wintypes.HANDLE, wintypes.UINT]
        k32.TerminateJobObject.restype = wintypes.BOOL
        k32.CloseHandle.argtypes = [wintypes.HANDLE]
        k32.CloseHandle.restype = wintypes.BOOL
        self._k32: Any = k32

    def _fail(self, what: str) -> OSError:
        code = ctypes.get_last_error()  # type: ignore[attr-defined]
        return OSError(code, f"{what} failed ({ctypes.FormatError(code)})")  # type: ignore[attr-defined]

    def create_kill_on_close_job(self) -> int:
        job = self._k32.CreateJobObjectW(None, None)
        if not job:
            raise self._fail("CreateJobObject")
        info = ExtendedLimitInformation()
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        if not self._k32.SetInformationJobObject(job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
                                                 ctypes.byref(info), ctypes.sizeof(info)):
            error = self._fail("SetInformationJobObject")
            self._k32.CloseHandle(job)
            raise error
        return int(job)

    def open_process(self, pid: int) -> int:
        handle = self._k32.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
        if not handle:
            raise self._fail(f"OpenProcess({pid})")
        return int(handle)

    def assign(self, job: int, process: int) -> None:
        if not self._k32.AssignProcessToJobObject(job, process):
            raise self._fail("AssignProcessToJobObject")

    def terminate(self, job: int, exit_code: int) -> None:
        if not self._k32.TerminateJobObject(job, exit_code):
            raise self._fail("TerminateJobObject")

    def close(self, handle: int) -> None:
        self._k32.CloseHandle(handle)


class ProcessJob:
    """One child's Job Object: :meth:`assign` it once started, :meth:`terminate` to end the
    tree, :meth:`close` once it has ended (closing also ends whatever is still in it)."""

    def __init__(self, api: JobApi | None = None) -> None:
        self._api: JobApi = api if api is not None else Kernel32JobApi()
        self._job = 0

    @property
    def assigned(self) -> bool:
        return bool(self._job)

    def assign(self, pid: int) -> bool:
        """Put ``pid`` (and what it starts from now on) in a new kill-on-close job; False
        (logged) when Windows refused, in which case only the child itself can be ended."""
        job = process = 0
        try:
            job = self._api.create_kill_on_close_job()
            process = self._api.open_process(pid)
            self._api.assign(job, process)
        except OSError as exc:
            logger.warning("process {} could not be put in a job object: {}", pid, exc)
            if job:
                self._api.close(job)
            return False
        finally:
            if process:
                self._api.close(process)
        self._job = job
        return True

    def terminate(self, exit_code: int = KILLED_EXIT_CODE) -> bool:
        """End every process in the job now; False when there is no job or it failed."""
        if not self._job:
            return False
        try:
            self._api.terminate(self._job, exit_code)
        except OSError as exc:
            logger.warning("could not end the job's processes: {}", exc)
            return False
        return True

    def close(self) -> None:
        """Close the job (kill-on-close ends anything left in it). Idempotent."""
        if self._job:
            job, self._job = self._job, 0
            self._api.close(job)
