"""What the commands share: the consoles, the one-line error, the options declared once, loading a model."""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

# soft_wrap: a line longer than the terminal wraps where the terminal wraps it (titles stay whole).
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typing.NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")  # escaped: brackets in a message are text, not markup
    raise typer.Exit(code=2)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}")


def progress_bar(disable: bool = False) -> Progress:
    """A bar on stderr; ``disable``: none at all (even an empty bar leaves a blank line)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err, disable=disable)


# --- options more than one command takes ---------------------------------------------------------

Model = Annotated[Optional[Path], typer.Option(help="bundle folder (default: the shipped model)")]
DataConfig = Annotated[str, typer.Option(help="hub dataset config: patent | abstract")]
TextFields = Annotated[
    Optional[list[str]],
    typer.Option("--text-field", help="text column(s), joined; repeatable (default: text, or title + abstract)"),
]
LongText = Annotated[
    Literal["truncate", "chunk"],
    typer.Option(help="text longer than the model's window: read its start, or average overlapping windows"),
]
BatchSize = Annotated[Optional[int], typer.Option(min=1, help="most texts per model call (default 8 on CPU, 32 on a GPU)")]
Compile = Annotated[
    bool, typer.Option("--compile", help="torch.compile the model: 30-80 s to start, ~20% faster after (large files)")
]
Engine = Annotated[
    Literal["local", "ray"],
    typer.Option(help="local: this process | ray: a Ray cluster (millions of rows; a cut-short run resumes)"),
]
RayAddress = Annotated[
    Optional[str], typer.Option(help="Ray cluster to join, e.g. 10.0.0.5:6379 (default: env RAY_ADDRESS, else a local cluster)")
]
Actors = Annotated[int, typer.Option(min=1, help="--engine ray: model replicas (Ray actors)")]
RowsPerBatch = Annotated[int, typer.Option(min=1, help="--engine ray: rows an actor runs through the model and writes at a time")]
CpusPerActor = Annotated[float, typer.Option(help="--engine ray: CPUs (and torch threads) per actor on CPU clusters")]
TagSetsOption = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--tags",
        help="tag set folder (`patentclf tags fit`), or a folder of tag sets; repeatable: each answer carries its tags",
    ),
]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="the service's config file (database_url, feedback_db)")]

# How an answer is shaped (patentclf.inference.options.PredictOptions): None is "not given", the
# default. Checked by PredictOptions itself (steering_options), so a bad value is one line, before
# the model loads, and the bounds are said in one place.
_STEER = "Answer options"
Classes = Annotated[
    Optional[int], typer.Option(help="main classes per answer, 0..50 (0: none; default 5)", rich_help_panel=_STEER)
]
Subclasses = Annotated[Optional[int], typer.Option(help="main subclasses per answer, 0..50 (default 5)", rich_help_panel=_STEER)]
Groups = Annotated[
    Optional[int], typer.Option(help="main groups per answer, 0..50 (with a patent index; default 5)", rich_help_panel=_STEER)
]
Similar = Annotated[
    Optional[int], typer.Option(help="nearest indexed patents per answer, 0..50 (default 5)", rich_help_panel=_STEER)
]
Threshold = Annotated[
    Optional[float],
    typer.Option(
        help="leave out classes, subclasses and groups less probable than this, 0..1 (default 0)", rich_help_panel=_STEER
    ),
]
SectionsThreshold = Annotated[
    Optional[float],
    typer.Option(
        help="probability a section needs to join the answer's sections, 0..1 (default: the model's)", rich_help_panel=_STEER
    ),
]
Depth = Annotated[
    Optional[str],
    typer.Option(
        help="deepest level answered: section (no index search: faster), class, subclass or group (default)",
        rich_help_panel=_STEER,
    ),
]

Explain = Annotated[
    bool,
    typer.Option(
        "--explain",
        help="say which sentences raised or lowered the section's, best subclass's and best group's probability "
        "(the explanation field: about one prediction more per sentence)",
        rich_help_panel=_STEER,
    ),
]


def steering_options(**given):
    """A ``PredictOptions`` of the flags given (None: not given), or a one-line error naming the flag."""
    from pydantic import ValidationError

    from patentclf.inference.options import PredictOptions

    try:
        return PredictOptions(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = "--" + str(error["loc"][0]).replace("_", "-")
        fail(f"{flag} {given.get(str(error['loc'][0]))!r}: {error['msg']}")


def text_fields(fields: list[str] | None) -> tuple[str, ...] | None:
    return tuple(fields) if fields else None


def load_classifier(
    model: Path | None,
    *,
    compile: bool = False,
    vllm_url: str | None = None,
    index: Path | bool | None = None,
    tags: list[Path] | None = None,
    openvino: bool = False,
):
    """``Classifier.load``, with any failure to load said in one line."""
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.index import PatentIndexError
    from patentclf.inference.tags import TagSetError
    from patentclf.model.base import ModelError

    try:
        if not vllm_url:  # a first run converts the embedded base model: say why it takes a minute
            from patentclf.model.base import conversion_message
            from patentclf.model.bundle import default_model_dir, read_info

            note = conversion_message(read_info(model or default_model_dir()).base_model)
            if note:
                err.print(note)
        if vllm_url:
            classifier = Classifier.load(model, engine="vllm", vllm_url=vllm_url, index=index or False, tags=tags or None)
            classifier.engine.check()
            return classifier
        engine = "openvino" if openvino else "torch"
        return Classifier.load(model, compile=compile, index=index, tags=tags or None, engine=engine)
    except (PatentIndexError, TagSetError) as exc:
        fail(str(exc))
    except Exception as exc:
        # Compiling at load can fail in inductor (e.g. no C++ compiler: a RuntimeError): say so.
        if compile and not isinstance(exc, (ModelError, OSError)):
            first_line = (str(exc).strip().splitlines() or [""])[0]
            fail(f"--compile failed ({type(exc).__name__}: {first_line}); run without --compile")
        if isinstance(exc, (ModelError, OSError, ValueError, RuntimeError, ImportError)):  # RuntimeError: a vLLM server gone
            fail(str(exc))
        raise


def print_figures(info) -> None:
    """A bundle's recorded figures (a ``BundleInfo``), one line a split."""
    for name, metrics in info.metrics.items():
        ece = f", ECE {metrics['ece']:.3f}" if "ece" in metrics else ""
        console.print(f"  {name}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}{ece} (n={metrics['n']})")


def settings_flags(settings_cls, skip: tuple[str, ...] = (), names: dict[str, tuple[str, ...]] | None = None):
    """A decorator giving a command one ``--flag`` per field of a pydantic model (type, choices and help
    from the field's declaration; ``names``: other flag names for a field). Flags default to None, "not
    given", so the config file (and, for settings, the environment) still apply; the command receives
    them as keyword arguments."""
    from pydantic import SecretStr
    from pydantic_settings import BaseSettings

    def shown(default) -> str:
        if default is None or default == [] or isinstance(default, SecretStr):
            return ""
        if isinstance(default, bool):
            return "on" if default else "off"
        return " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)

    def flag(name: str, field) -> inspect.Parameter:
        kind = field.annotation
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None -> X
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        kind = str if kind is SecretStr else kind
        dashed = name.replace("_", "-")
        decls = (names or {}).get(name) or ((f"--{dashed}/--no-{dashed}",) if kind is bool else ())
        notes = []
        if issubclass(settings_cls, BaseSettings):
            notes.append(f"env {settings_cls.model_config.get('env_prefix', '')}{name.upper()}")
        if not field.default_factory and shown(field.default):
            notes.append(f"default {shown(field.default)}")
        extra = f" ({'; '.join(notes)})" if notes else ""
        option = typer.Option(
            *decls, help=f"{field.description or name}{extra}", show_default=False, rich_help_panel=panels.get(name)
        )
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typing.Annotated[Optional[kind], option]
        )

    # A panel runs from the field that opens it (settings_cls.panels) to the next one's.
    panels, panel = {}, None
    for name in settings_cls.model_fields:
        panel = getattr(settings_cls, "panels", {}).get(name, panel)
        panels[name] = panel

    def decorate(command):
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        flags = [flag(name, field) for name, field in settings_cls.model_fields.items() if name not in skip]
        command.__signature__ = signature.replace(parameters=own + flags)
        return command

    return decorate
