"""`ml-assets`: demo data, a headless run of the whole graph, and `dagster dev` with the
project's instance."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ml_assets.pipeline.spec import SpecError
from ml_assets.settings import (
    QUIET_MLFLOW_ENV,
    Settings,
    SettingsError,
    load_settings,
    project_root,
)

# The bundled demo pipeline's name: `demo-data` writes its landing files.
DEMO_PIPELINE = "fraud"
DEMO_ROWS_PER_DAY = 5000


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def prepare_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at the project's instance so history survives restarts.

    The instance config is the repository's dagster.yaml, copied in on every start so edits to
    it take effect.
    """
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = project_root() / "dagster.yaml"
    if config.exists():
        shutil.copyfile(config, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_demo_data(args: argparse.Namespace, settings: Settings) -> int:
    from ml_assets.demo.generate import write_demo_data

    out = Path(args.out) if args.out else settings.landing_root / DEMO_PIPELINE
    # Default: the N days up to yesterday, so the newest daily partition already exists.
    start = args.start or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days)
    summary = write_demo_data(
        out,
        start=start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        drift_from=args.drift_from,
        fmt=args.format,
    )
    print(
        f"wrote {summary.transaction_rows:,} transactions and {summary.customer_rows:,} customer "
        f"records for {summary.start} .. {summary.end} under {summary.out_dir}"
    )
    return 0


def demo_data_if_missing(settings: Settings, days: int, rows_per_day: int) -> bool:
    """Write `days` of demo data when the demo pipeline is loaded and has no landing files yet.

    Only for the demo pipeline (or a tweaked copy of its spec, same name): a user's own
    pipelines bring their own files. Returns whether it wrote any.
    """
    from ml_assets.pipeline.spec import load_spec

    demo_loaded = any(load_spec(path).name == DEMO_PIPELINE for path in settings.pipeline_specs)
    if (
        not days
        # Made-up payments in a shared landing folder would be ingested like real ones.
        or settings.deployment != "local"
        or not demo_loaded
        or (settings.landing_root / DEMO_PIPELINE / "transactions").exists()
    ):
        return False
    cmd_demo_data(
        argparse.Namespace(
            out=None,
            start=None,
            days=days,
            rows_per_day=rows_per_day,
            seed=42,
            drift_from=None,
            format="csv",
        ),
        settings,
    )
    return True


def preflight(settings: Settings) -> None:
    """Configuration mistakes that would otherwise show only inside a run, or in the code
    server's log while the UI starts with a broken code location. Raises SettingsError or
    SpecError naming the variable or file, before anything is written."""
    from ml_assets.definitions import build_definitions

    build_definitions(settings)
    token = settings.databricks_token_env
    if settings.uses_databricks and not settings.databricks_token_set:
        raise SettingsError(
            f"ML_ASSETS_DEPLOYMENT={settings.deployment} runs steps on Databricks: set {token} "
            "to a Databricks token (or name the variable that holds it with "
            "ML_ASSETS_DATABRICKS_TOKEN_ENV)"
        )


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from ml_assets.headless import materialize_all

    preflight(settings)
    prepare_dagster_home(settings)
    demo_data_if_missing(settings, args.demo_days, args.rows_per_day)
    return materialize_all(settings)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the webserver binds: connections of a server stopped a moment ago (TIME_WAIT) do
        # not hold the port, a listening server does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    # `dagster dev` would start its daemon anyway and keep running without a UI (a second
    # daemon on the same instance, if the port is held by another `ml-assets dev`).
    if _port_in_use(args.host, args.port):
        print(
            f"port {args.port} on {args.host} is in use (another `ml-assets dev`?): stop that "
            f"process, or choose another port: `make run PORT={args.port + 1}` or "
            f"`ml-assets dev --port {args.port + 1}`",
            file=sys.stderr,
        )
        return 1
    preflight(settings)
    demo_data_if_missing(settings, args.demo_days, DEMO_ROWS_PER_DAY)
    prepare_dagster_home(settings)
    import dagster as dg

    from ml_assets.headless import fail_orphaned_runs

    # A killed `ml-assets run` left its run STARTED, holding its pipeline's place in the queue.
    for line in fail_orphaned_runs(dg.DagsterInstance.get()):
        print(line)
    # `dagster dev` started in the background from a script inherits an ignored SIGINT and
    # then cannot be stopped with Ctrl-C or `kill -INT`; restore the default first.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # `dagster dev` warns on every start that `dg dev` supersedes it; `dg dev` needs a `dg`
    # project layout, and `dagster dev -w workspace.yaml` stays supported. Only that warning.
    os.environ["PYTHONWARNINGS"] = _ignoring(os.environ, "Function `dev_command` is superseded")
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    argv = [
        dagster,
        "dev",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workspace",
        str(project_root() / "workspace.yaml"),
    ]
    print(f"Dagster UI on http://{args.host}:{args.port} (instance: {settings.dagster_home})")
    config = project_root() / "dagster.yaml"
    if config.exists() and (Path.cwd() / "dagster.yaml").resolve() == config.resolve():
        # `dagster dev` warns about any dagster.yaml in the current folder that is not in
        # DAGSTER_HOME, even when (as here) DAGSTER_HOME holds a copy of it.
        print(
            "The instance uses a copy of ./dagster.yaml: Dagster's warning that this file "
            "'will not be used' can be ignored."
        )
    sys.stdout.flush()
    os.execv(argv[0], argv)


def _ignoring(env: Mapping[str, str], *messages: str) -> str:
    """PYTHONWARNINGS for a server we start, also hiding the warnings whose message starts with
    one of `messages` (warnings about its own dependencies, printed at every start)."""
    return ",".join(filter(None, [env.get("PYTHONWARNINGS"), *(f"ignore:{m}" for m in messages)]))


def _mlflow_env(settings: Settings) -> dict[str, str]:
    # MLflow's servers start `uvicorn`/`gunicorn` by name: they must be found in this venv.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {
        **QUIET_MLFLOW_ENV,
        **os.environ,
        "PATH": path,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        # MLflow's server imports a Starlette module Starlette deprecated, once per worker.
        "PYTHONWARNINGS": _ignoring(os.environ, "starlette.middleware.wsgi is deprecated"),
    }
    if settings.mlflow_registry_uri:
        env["MLFLOW_REGISTRY_URI"] = settings.mlflow_registry_uri
    return env


def _exec(argv: list[str], env: dict[str, str]) -> int:
    """Replace this process with a server. A server started in the background from a script
    inherits an ignored SIGINT and then cannot be stopped with Ctrl-C or `kill -INT`;
    restore the default first."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


def _venv_tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve a registered model (default: its champion) as MLflow's REST scoring server."""
    uri = f"models:/{args.model}@{args.alias}"
    print(f"serving {uri} on http://{args.host}:{args.port}/invocations")
    argv = [
        _venv_tool("mlflow"),
        "models",
        "serve",
        "--model-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--env-manager",
        "local",
        "--workers",
        "1",
    ]
    return _exec(argv, _mlflow_env(settings))


def cmd_mlflow_ui(args: argparse.Namespace, settings: Settings) -> int:
    """The MLflow UI over the deployment's tracking store (runs, datasets, registry)."""
    argv = [
        _venv_tool("mlflow"),
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        # One person's browser: MLflow's default of 4 server processes only costs memory.
        "--workers",
        "1",
    ]
    if settings.mlflow_artifact_root:
        argv += ["--default-artifact-root", settings.mlflow_artifact_root]
    return _exec(argv, _mlflow_env(settings))


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its --help, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _add_address(parser: argparse.ArgumentParser, port: int, what: str) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"interface {what} listens on (127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=port, help=f"port {what} listens on")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=description, formatter_class=_HelpWithDefaults)

    demo = command("demo-data", "write demo landing files (transactions, customers)")
    demo.add_argument("--days", type=int, default=30, help="number of days")
    demo.add_argument(
        "--rows-per-day", type=int, default=DEMO_ROWS_PER_DAY, help="transactions per day"
    )
    demo.add_argument("--seed", type=int, default=42, help="random seed (same seed, same files)")
    demo.add_argument("--start", type=_date, help="first day (default: DAYS days ago)")
    demo.add_argument("--drift-from", type=_date, help="inject distribution drift from this day")
    demo.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format")
    demo.add_argument("--out", help="folder (default: <landing root>/fraud)")
    demo.set_defaults(func=cmd_demo_data)

    run = command("run", "materialize the whole graph once, headless")
    run.add_argument(
        "--demo-days",
        type=int,
        default=30,
        help="when the demo pipeline is loaded and has no landing files, write this many days "
        "of demo data first (0: don't)",
    )
    run.add_argument(
        "--rows-per-day", type=int, default=DEMO_ROWS_PER_DAY, help="transactions per demo day"
    )
    run.set_defaults(func=cmd_run)

    dev = command("dev", "start the Dagster UI and daemon on the project's instance")
    _add_address(dev, 3000, "the Dagster UI")
    dev.add_argument(
        "--demo-days",
        type=int,
        default=0,
        help="when the demo pipeline is loaded and has no landing files, write this many days "
        "of demo data first (0: don't; `make run` asks for 30)",
    )
    dev.set_defaults(func=cmd_dev)

    serve = command("serve", "serve a registered model as a REST endpoint")
    serve.add_argument("--model", default="fraud_detector", help="registered model name")
    serve.add_argument("--alias", default="champion", help="alias to serve")
    _add_address(serve, 5001, "the model server")
    serve.set_defaults(func=cmd_serve)

    ui = command("mlflow-ui", "browse MLflow runs and the model registry")
    _add_address(ui, 5000, "the MLflow UI")
    ui.set_defaults(func=cmd_mlflow_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "days", 1) < 1 or getattr(args, "rows_per_day", 1) < 1:
        print("ml-assets: --days and --rows-per-day must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args, load_settings())
    except (SettingsError, SpecError) as error:
        # A configuration mistake: the message names the variable, file or field; a traceback
        # would only bury it.
        print(f"ml-assets: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
