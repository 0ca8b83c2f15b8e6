"""The "Spark driver" of the Databricks stand-in: runs one ``spark_python_task`` locally.

This file is copied by :class:`~ml_assets_tests.databricks.standin.DatabricksStandIn` into its
runtime folder and started as ``python standin_driver.py <spec.json>`` with a clean environment
(no ``PYTHONPATH``, cwd = the cluster's driver folder), so it must not import anything from this
repository. It mimics what the Databricks runtime gives a Python file task:

* ``sys.argv = [python_file, *parameters]`` and ``__name__ == "__main__"``;
* the globals ``spark``, ``sc``, ``sqlContext`` (lazy: local Spark starts on first use only) and
  ``dbutils`` (``secrets``, ``fs``, ``notebook.exit``);
* the DBFS FUSE mount: ``/dbfs/...`` paths opened from Python in this process resolve to the
  stand-in's DBFS folder (``open``, ``os.*``, ``os.path.*``, ``pathlib`` and ``shutil`` go through
  the patched ``os``/``io`` functions);
* "cluster libraries": ``whl``/``egg`` libraries from DBFS are put on ``sys.path``;
* isolation from the orchestrator's working tree: the cluster is another machine, so paths that
  exist only on the orchestrator's side (its cwd, the project checkout, editable installs) are
  hidden from imports even when something (Dagster's ``ModuleCodePointer.working_directory``)
  puts them on ``sys.path``.

The outcome is written to ``result_file`` (``error``/``error_trace`` like ``runs/get-output``).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import runpy
import signal
import sys
import time
import traceback
from importlib.machinery import PathFinder

SPEC: dict = {}


# --------------------------------------------------------------------------------------------
# /dbfs FUSE emulation
# --------------------------------------------------------------------------------------------
def _fuse_to_local(path):
    prefix = SPEC.get("fuse_prefix", "/dbfs")
    root = SPEC["dbfs_root"]
    if isinstance(path, bytes):
        mapped = _fuse_to_local(os.fsdecode(path))
        return os.fsencode(mapped) if isinstance(mapped, str) else path
    if not isinstance(path, str):
        if isinstance(path, os.PathLike):
            fs = os.fspath(path)
            mapped = _fuse_to_local(fs)
            return path if mapped == fs else mapped
        return path
    if path == prefix or path.startswith(prefix + "/"):
        rest = path[len(prefix) :].lstrip("/")
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        clean: list[str] = []
        for p in parts:
            if p == "..":
                if clean:
                    clean.pop()
            else:
                clean.append(p)
        return os.path.join(root, *clean) if clean else root
    return path


def _wrap_path_fn(fn, n_paths=1):
    def wrapper(*args, **kwargs):
        args = list(args)
        for i in range(min(n_paths, len(args))):
            args[i] = _fuse_to_local(args[i])
        for key in ("path", "src", "dst", "file"):
            if key in kwargs:
                kwargs[key] = _fuse_to_local(kwargs[key])
        return fn(*args, **kwargs)

    wrapper.__wrapped__ = fn
    wrapper.__name__ = getattr(fn, "__name__", "wrapped")
    wrapper.__doc__ = getattr(fn, "__doc__", None)
    return wrapper


def _install_fuse() -> None:
    one = [
        "stat", "lstat", "listdir", "scandir", "mkdir", "makedirs", "remove", "unlink", "rmdir",
        "chmod", "access", "open", "utime", "truncate", "readlink", "chdir",
    ]  # fmt: skip
    two = ["rename", "replace", "link", "symlink"]
    for name in one:
        if hasattr(os, name):
            setattr(os, name, _wrap_path_fn(getattr(os, name), 1))
    for name in two:
        if hasattr(os, name):
            setattr(os, name, _wrap_path_fn(getattr(os, name), 2))
    for name in ["exists", "isdir", "isfile", "getsize", "getmtime", "realpath", "abspath"]:
        setattr(os.path, name, _wrap_path_fn(getattr(os.path, name), 1))
    opener = _wrap_path_fn(io.open, 1)
    builtins.open = opener
    io.open = opener


# --------------------------------------------------------------------------------------------
# Isolation from the orchestrator's working tree
# --------------------------------------------------------------------------------------------
def _real(p: str) -> str:
    try:
        return os.path.realpath(p)
    except Exception:
        return p


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


_HIDDEN_CACHE: dict[str, bool] = {}


def _is_hidden(entry) -> bool:
    if not isinstance(entry, str):
        return False
    cached = _HIDDEN_CACHE.get(entry)
    if cached is None:
        real = _real(entry or os.getcwd())
        hidden = SPEC.get("_hidden_real", [])
        allowed = SPEC.get("_allowed_real", [])
        cached = _HIDDEN_CACHE[entry] = _under(real, hidden) and not _under(real, allowed)
    return cached


class _IsolatedPathFinder(PathFinder):
    """``PathFinder`` that skips ``sys.path`` entries that only exist on the orchestrator."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        entries = sys.path if path is None else path
        visible = [e for e in entries if not _is_hidden(e)]
        return super().find_spec(fullname, visible, target)


def _install_isolation() -> None:
    SPEC["_hidden_real"] = [_real(p) for p in SPEC.get("hidden_paths", [])]
    allowed = list(SPEC.get("allowed_paths", []))
    allowed += [sys.prefix, sys.base_prefix, sys.exec_prefix]
    try:
        import site

        allowed += site.getsitepackages()
    except Exception:
        pass
    SPEC["_allowed_real"] = [_real(p) for p in allowed]
    # Editable installs of the project point into the working tree: not on a real cluster.
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if not type(f).__module__.startswith("__editable__")
        and not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path_hooks[:] = [
        h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")
    ]
    sys.path[:] = [e for e in sys.path if not _is_hidden(e)]
    for i, finder in enumerate(sys.meta_path):
        if finder is PathFinder:
            sys.meta_path[i] = _IsolatedPathFinder
    sys.path_importer_cache.clear()


# --------------------------------------------------------------------------------------------
# Databricks runtime globals
# --------------------------------------------------------------------------------------------
class _LazySpark:
    """Stands for the runtime's pre-made ``spark``/``sc``; starts local Spark on first use."""

    def __init__(self, which: str):
        object.__setattr__(self, "_which", which)

    def _target(self):
        from pyspark.sql import SparkSession

        session = SparkSession.builder.getOrCreate()
        which = object.__getattribute__(self, "_which")
        if which == "sc":
            return session.sparkContext
        if which == "sqlContext":
            from pyspark.sql import SQLContext

            return SQLContext(session.sparkContext, session)
        return session

    def __getattr__(self, name):
        return getattr(self._target(), name)

    def __setattr__(self, name, value):
        setattr(self._target(), name, value)

    def __repr__(self) -> str:
        return f"<stand-in lazy {object.__getattribute__(self, '_which')}>"


class _SecretsUtil:
    def __init__(self, secrets_file: str | None):
        self._secrets: dict[str, dict[str, str]] = {}
        if secrets_file and os.path.exists(secrets_file):
            with open(secrets_file) as fh:
                self._secrets = json.load(fh)

    def get(self, scope: str, key: str) -> str:
        try:
            return self._secrets[scope][key]
        except KeyError:
            raise ValueError(
                f"java.lang.IllegalArgumentException: Secret does not exist with scope: {scope}"
                f" and key: {key}"
            ) from None

    def getBytes(self, scope: str, key: str) -> bytes:
        return self.get(scope, key).encode()

    def list(self, scope: str) -> list:
        if scope not in self._secrets:
            raise ValueError(f"Scope {scope} does not exist")
        return [{"key": k} for k in sorted(self._secrets[scope])]

    def listScopes(self) -> list:
        return [{"name": s} for s in sorted(self._secrets)]


class _FsUtil:
    @staticmethod
    def _local(path: str) -> str:
        if path.startswith("dbfs:"):
            path = "/dbfs/" + path[len("dbfs:") :].lstrip("/")
        elif path.startswith("file:"):
            return path[len("file:") :]
        elif not path.startswith("/dbfs"):
            path = "/dbfs/" + path.lstrip("/")
        return _fuse_to_local(path)

    def ls(self, path: str) -> list:
        local = self._local(path)
        base = path.rstrip("/")
        return [
            {"path": f"{base}/{n}", "name": n, "size": os.path.getsize(os.path.join(local, n))}
            for n in sorted(os.listdir(local))
        ]

    def mkdirs(self, path: str) -> bool:
        os.makedirs(self._local(path), exist_ok=True)
        return True

    def put(self, path: str, contents: str, overwrite: bool = False) -> bool:
        local = self._local(path)
        if os.path.exists(local) and not overwrite:
            raise FileExistsError(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as fh:
            fh.write(contents)
        return True

    def head(self, path: str, max_bytes: int = 65536) -> str:
        with open(self._local(path), "rb") as fh:
            return fh.read(max_bytes).decode(errors="replace")

    def rm(self, path: str, recurse: bool = False) -> bool:
        import shutil

        local = self._local(path)
        if os.path.isdir(local):
            if not recurse:
                raise OSError(f"{path} is a directory")
            shutil.rmtree(local)
        elif os.path.exists(local):
            os.remove(local)
        return True

    def cp(self, src: str, dst: str, recurse: bool = False) -> bool:
        import shutil

        s, d = self._local(src), self._local(dst)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        if os.path.isdir(s):
            shutil.copytree(s, d, dirs_exist_ok=True)
        else:
            shutil.copyfile(s, d)
        return True


class _NotebookExit(BaseException):
    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


class _NotebookUtil:
    @staticmethod
    def exit(value: str):
        raise _NotebookExit(str(value))


class _DBUtils:
    def __init__(self, secrets_file: str | None):
        self.secrets = _SecretsUtil(secrets_file)
        self.fs = _FsUtil()
        self.notebook = _NotebookUtil()


# --------------------------------------------------------------------------------------------
def _write_result(payload: dict) -> None:
    tmp = SPEC["result_file"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh)
    os.replace(tmp, SPEC["result_file"])


def _format_error(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()


def _hang_at_call(targets: list[str], after_calls: int, matching: str | None) -> None:
    """Make each ``module:attr[.attr]`` (a function or a method) hang forever from the
    ``after_calls + 1``-th call of any of them on; with ``matching``, only calls with an argument
    (or a ``table_uri`` of one: a Delta table) containing that text count.

    Patched before the task's file runs, so ``from module import function`` in the task's code
    binds the patched function; a method is patched on its class."""
    import importlib

    calls = [0]

    def matches(args, kwargs) -> bool:
        if matching is None:
            return True
        values = [*args, *kwargs.values()]
        return any(matching in str(getattr(v, "table_uri", v)) for v in values)

    def patch(target: str) -> None:
        module_name, _, path = target.partition(":")
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)

        def hanging(*args, **kwargs):
            if matches(args, kwargs):
                calls[0] += 1
                if calls[0] > after_calls:
                    # the task's stdout may be redirected (databricks_step_main): the driver's own
                    print(f"[databricks-standin] injected fault: hanging in {target}",
                          file=sys.__stdout__, flush=True)  # fmt: skip
                    while True:
                        time.sleep(3600)
            return original(*args, **kwargs)

        hanging.__wrapped__ = original
        setattr(owner, name, hanging)

    for target in targets:
        patch(target)


def main() -> int:
    with open(sys.argv[1]) as fh:
        SPEC.update(json.load(fh))

    # A cancelled run gets SIGTERM: exit like a killed driver (no Python cleanup races).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))

    fault = SPEC.get("fault") or {}
    if SPEC.get("isolate", True):
        _install_isolation()
    for entry in SPEC.get("extra_sys_path", []):
        sys.path.append(entry)
    if SPEC.get("map_fuse", True):
        _install_fuse()

    python_file = SPEC["python_file"]
    params = list(SPEC.get("parameters", []))
    run_globals = {
        "spark": _LazySpark("spark"),
        "sc": _LazySpark("sc"),
        "sqlContext": _LazySpark("sqlContext"),
        "dbutils": _DBUtils(SPEC.get("secrets_file")),
    }

    print(
        f"[databricks-standin] run {SPEC.get('run_id')} pid {os.getpid()}: {python_file} {params}",
        flush=True,
    )

    if fault.get("kind") == "hang" and fault.get("at_call"):
        targets = fault["at_call"]
        targets = [targets] if isinstance(targets, str) else list(targets)
        _hang_at_call(targets, int(fault.get("after_calls") or 0), fault.get("matching"))
    elif fault.get("kind") == "hang":
        print("[databricks-standin] injected fault: hanging (never finishes)", flush=True)
        while True:
            time.sleep(3600)

    sys.argv = [python_file, *params]
    try:
        if fault.get("kind") == "task_failure":
            raise RuntimeError(fault.get("message") or "stand-in injected task failure")
        runpy.run_path(python_file, init_globals=run_globals, run_name="__main__")
    except _NotebookExit as e:
        _write_result({"ok": True, "notebook_output": e.value})
        return 0
    except SystemExit as e:
        if e.code in (None, 0):
            _write_result({"ok": True})
            return 0
        trace = traceback.format_exc()
        sys.stderr.write(trace)
        _write_result({"ok": False, "error": f"SystemExit: {e.code}", "error_trace": trace})
        return e.code if isinstance(e.code, int) else 1
    except BaseException as e:
        trace = traceback.format_exc()
        sys.stderr.write(trace)
        sys.stderr.flush()
        _write_result({"ok": False, "error": _format_error(e), "error_trace": trace})
        return 1
    _write_result({"ok": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
