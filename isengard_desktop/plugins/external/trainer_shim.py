"""Isengard's launcher for external trainers. Runs under the *trainer's* Python; stdlib only.

This file is not imported by the app: the ai-toolkit and kohya backends write its text next
to the job's configs (``jobs/<id>/configs/isengard_shim.py``) and start::

    <trainer python> isengard_shim.py CONTEXT.json -- SCRIPT [ARGS...]

in the trainer's folder. It then runs SCRIPT in this same process, exactly as
``python SCRIPT ARGS`` would (``sys.argv``, ``sys.path[0]``), after doing, in order:

1. deleting stop files left over from earlier runs of the job (each launch has its own name,
   so an old one can never stop this run);
2. printing one ``[isengard] context {...}`` line (the context JSON, compact) that tells the
   app's line parser where the job's files are;
3. ``link_tree`` (when asked): a local model folder linked into a job-local HF cache (the
   dataset is staged by the app before launch, from the job's photo list:
   ``plugins/external/files.stage_job_dataset``);
4. ``set_aside``: moving saves that the app has not seen complete (a save cut short by a kill)
   out of the trainer's output folder, so a trainer that resumes from its newest file resumes
   from a complete one. Nothing is deleted: they go to ``.isengard-set-aside/<time>/``;
5. watching the stop file (the app's "Stop & save" creates it).

Stop: neither tool saves when it is interrupted (ai-toolkit's run.py and UI trainer stop
without saving; sd-scripts has no handler). For ai-toolkit this launcher wraps
``BaseSDTrainProcess.end_step_hook`` so that, once a stop is asked for, the step in progress
finishes, ``save(step)`` writes a normal step save (``<name>_<step>.safetensors`` plus
``optimizer.pt``) and the run ends with exit code 0. Without a finished step (still loading
or caching), for sd-scripts, or when the wrap is impossible (another ai-toolkit version), it
ends at once and the newest periodic save is what resume uses.

Lines this launcher prints on stdout (``[isengard] <kind> <json>``): ``context``, ``note``
(``{"level", "message"}``), ``stop`` (``{"saving": bool}``), ``stopped`` (``{"saved": bool,
"step": int}``), ``error`` (``{"kind", "message"}``, then exit code 2).

Several GPUs: under ``accelerate launch`` every worker runs this launcher (``RANK`` set in its
environment). Rank 0 alone prints those lines (errors: every rank) and does the file work of
steps 1, 3 and 4; every rank watches the stop file and ends on it.
"""

import json
import os
import runpy
import shutil
import sys
import threading
import time

PREFIX = "[isengard]"
SET_ASIDE = ".isengard-set-aside"


class Stopped(BaseException):
    """Raised inside the trainer after the stop save; not an Exception, so the tool's own
    ``except Exception`` blocks let it through."""


def rank():
    """This worker's rank under a distributed launcher (0 alone)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def say(kind, payload):
    if kind != "error" and rank() > 0:
        return    # one worker speaks for all
    sys.stdout.write("%s %s %s\n" % (PREFIX, kind, json.dumps(payload, separators=(",", ":"),
                                                              ensure_ascii=False)))
    sys.stdout.flush()


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def link_tree(spec):
    """Files of ``spec["source"]/<sub>`` for each of ``spec["subfolders"]`` appear under
    ``spec["target"]/<sub>`` as symbolic links (hard links where those are refused): a local
    folder presented as an HF-cache snapshot, without copying gigabytes."""
    source, target = spec["source"], spec["target"]
    for sub in spec.get("subfolders", []):
        top = os.path.join(source, sub)
        if not os.path.isdir(top):
            raise FileNotFoundError("%s has no %s folder" % (source, sub))
        for folder, _dirs, files in os.walk(top):
            rel = os.path.relpath(folder, source)
            os.makedirs(os.path.join(target, rel), exist_ok=True)
            for name in files:
                src, dest = os.path.join(folder, name), os.path.join(target, rel, name)
                if os.path.lexists(dest):
                    if os.path.realpath(dest) == os.path.realpath(src) or _same_file(src, dest):
                        continue
                    os.remove(dest)
                try:
                    os.symlink(src, dest)
                except OSError:
                    os.link(src, dest)


def set_aside(spec):
    """Move ``<prefix>*`` saves in ``spec["folder"]`` that are not in ``spec["keep"]`` aside.
    With nothing to keep (a fresh start) ``optimizer.pt`` goes too."""
    folder, prefix = spec["folder"], spec["prefix"]
    keep = {os.path.abspath(p) for p in spec.get("keep", [])}
    if not os.path.isdir(folder):
        return
    moved = []
    for name in sorted(os.listdir(folder)):
        path = os.path.abspath(os.path.join(folder, name))
        if name == SET_ASIDE or path in keep:
            continue
        is_save = name.startswith(prefix) and (name.endswith(".safetensors")
                                               or os.path.isdir(path))
        if is_save or (not keep and name == "optimizer.pt"):
            moved.append((path, name))
    if not moved:
        return
    dest = os.path.join(folder, SET_ASIDE, time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(dest, exist_ok=True)
    for path, name in moved:
        shutil.move(path, os.path.join(dest, name))
    say("note", {"level": "warning",
                 "message": "moved %d save(s) the app had not seen complete to %s"
                            % (len(moved), dest)})


class StopState:
    def __init__(self, wait_s):
        self.requested = threading.Event()
        self.wait_s = wait_s
        self.patched = False
        self.in_loop = False
        self.lock = threading.Lock()
        self.exiting = False


def finish_without_save(state, why):
    with state.lock:
        if state.exiting:
            return
        state.exiting = True
    say("stopped", {"saved": False, "step": -1, "why": why})
    try:
        sys.stderr.flush()
    finally:
        os._exit(0)


def watch_stop(stop_file, state):
    while not os.path.exists(stop_file):
        time.sleep(0.2)
    state.requested.set()
    saving = state.patched and state.in_loop
    say("stop", {"saving": saving})
    if not saving:
        finish_without_save(state, "no finished training step to save" if state.patched
                            else "this trainer cannot save on request")
        return
    time.sleep(state.wait_s)  # the step hook saves and ends the run before this
    finish_without_save(state, "the step in progress did not finish in time")


def patch_ai_toolkit(state):
    """Wrap ``BaseSDTrainProcess.end_step_hook``: save and stop once a stop is asked for."""
    try:
        from jobs.process.BaseSDTrainProcess import BaseSDTrainProcess as cls
    except Exception as exc:  # another layout: stop then ends without a save
        say("note", {"level": "warning", "message": "stop cannot save with this ai-toolkit "
                                                    "(%s: %s)" % (type(exc).__name__, exc)})
        return False
    original = getattr(cls, "end_step_hook", None)
    if original is None or not callable(getattr(cls, "save", None)):
        say("note", {"level": "warning", "message": "stop cannot save with this ai-toolkit "
                                                    "(no end_step_hook/save)"})
        return False

    def end_step_hook(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        state.in_loop = True
        if state.requested.is_set():
            with state.lock:
                if state.exiting:
                    return result
                state.exiting = True
            step = int(getattr(self, "step_num", 0))
            self.save(step)
            logger = getattr(self, "logger", None)
            try:
                if logger is not None and hasattr(logger, "finish"):
                    logger.finish()
            except Exception:
                pass
            say("stopped", {"saved": True, "step": step})
            raise Stopped()
        return result

    cls.end_step_hook = end_step_hook
    return True


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: isengard_shim.py CONTEXT.json -- SCRIPT [ARGS...]\n")
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        context = json.load(fh)
    script, args = os.path.abspath(argv[2]), argv[3:]
    stop_file = context.get("stop_file") or ""
    if stop_file and rank() == 0:
        folder = os.path.dirname(stop_file)
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            if name.startswith("isengard-") and name.endswith(".stop") and \
                    os.path.join(folder, name) != stop_file:
                try:
                    os.remove(os.path.join(folder, name))
                except OSError:
                    pass
    say("context", context)
    try:
        if context.get("link_tree") and rank() == 0:
            link_tree(context["link_tree"])
        if context.get("set_aside") and rank() == 0:
            set_aside(context["set_aside"])
    except OSError as exc:
        say("error", {"kind": "config", "message": str(exc)})
        return 2
    if not os.path.isfile(script):
        say("error", {"kind": "config", "message": "%s does not exist" % script})
        return 2
    state = StopState(float(context.get("stop_wait_s", 25)))
    sys.argv = [script] + list(args)
    sys.path[0] = os.path.dirname(script)
    try:
        if context.get("tool") == "ai-toolkit":
            namespace = runpy.run_path(script, run_name="__isengard_run__")
            state.patched = patch_ai_toolkit(state)
            if stop_file:
                threading.Thread(target=watch_stop, args=(stop_file, state),
                                 daemon=True).start()
            namespace["main"]()
        else:
            if stop_file:
                threading.Thread(target=watch_stop, args=(stop_file, state),
                                 daemon=True).start()
            runpy.run_path(script, run_name="__main__")
    except Stopped:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
