"""Tag sets through the API (reviewers' keys): fit one from examples in the background, follow its
progress, and make a fitted one live, so that answers carry its tags from the next request on.

* ``POST /tags/fit`` ``{"name", "examples": [{"text", "tags", "id"?}]}``: the rows are checked at once
  (a bad one fails the job at once, its error naming the row as ``patentclf tags fit`` does), then fitted in a thread
  with the service's own loaded model (``jobs/tags.fit_tags``) into ``tags_dir/<name>``; 202 with the
  job's id.
* ``GET /tags/fit/{job}``: the job's status (``running``, ``fitted`` or ``failed``), the examples
  embedded so far of how many, the error, and once fitted the set's cross-validated figures.
* ``POST /tags/{name}/live``: the fitted set in ``tags_dir`` joins the answers' tag sets (replacing a
  live set of the same name). Live for this process: list it in the ``tags`` setting to keep it after
  a restart.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from patentclf.corpus.inputs import DataError
from patentclf.inference.tags import TagSet, TagSetError, read_tag_set_info
from patentclf.jobs.tags import check_counts, examples_of, fit_tags
from patentclf.model.bundle import model_digest
from patentclf.service.limits import body_limit
from patentclf.service.routes import _KEY_ERRORS, get_runtime, require_reviewer
from patentclf.service.runtime import ServiceRuntime, log_event
from patentclf.service.schemas import ErrorResponse

router = APIRouter()
# No dots: a set named X.old or X.partial would be taken for the staging folders of X.
NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MAX_EXAMPLES = 10_000  # the schema's bound; the service's body limit sets the one it states (example_limits)
EXAMPLE_CHARS = 4_000  # an example's text: the model reads its first window (a few thousand characters) anyway
TAGS_CHARS, TAG_NAMES, NAME_CHARS, ID_CHARS = 2_000, 20, 100, 100


class TagExample(BaseModel):
    text: str = Field(..., max_length=EXAMPLE_CHARS, description="the patent's text (title and abstract, or more)")
    tags: (
        Annotated[str, Field(max_length=TAGS_CHARS)]
        | Annotated[list[Annotated[str, Field(max_length=NAME_CHARS)]], Field(max_length=TAG_NAMES)]
    ) = Field(..., description="its tags: ';'-separated names, or a list (empty: an example of none)")
    id: str | None = Field(None, max_length=ID_CHARS, description="its id (kept with the example)")


def example_limits(text_chars: int, body_limit: int) -> tuple[int, int]:
    """(characters of an example's text, examples in one request) such that a request the schema allows
    fits in the service's body limit (JSON escapes a character in at most 6 bytes)."""
    chars = min(EXAMPLE_CHARS, text_chars)
    per_example = 6 * (chars + max(TAGS_CHARS, TAG_NAMES * (NAME_CHARS + 3)) + ID_CHARS) + 64
    return chars, max(2, min(MAX_EXAMPLES, (body_limit - 4096) // per_example))


class TagFitRequest(BaseModel):
    name: str = Field(..., pattern=NAME, description="the set's name (its folder in tags_dir)", examples=["batteries"])
    examples: list[TagExample] = Field(..., min_length=2, max_length=MAX_EXAMPLES)


class TagFitStatus(BaseModel):
    job: str
    name: str
    status: str = Field(..., description="running, fitted or failed")
    embedded: int = Field(0, description="examples put through the model so far")
    examples: int = Field(..., description="examples to fit on")
    error: str | None = None
    tag_set: dict[str, Any] | None = Field(
        None, description="once fitted: the set's tags with their thresholds and cross-validated figures"
    )
    live: bool = Field(False, description="its tags are in the answers")


@dataclass
class TagFitJob:
    job: str
    name: str
    examples: int
    status: str = "running"
    embedded: int = 0
    error: str | None = None
    tag_set: dict | None = None
    live: bool = False
    task: asyncio.Task | None = field(default=None, repr=False)

    def view(self) -> dict:
        return {k: getattr(self, k) for k in TagFitStatus.model_fields}


_REVIEWER_ERRORS = {**_KEY_ERRORS, 403: {"model": ErrorResponse, "description": "the key is not a reviewer's"}}


def _jobs(runtime: ServiceRuntime) -> dict[str, TagFitJob]:
    return runtime.tag_jobs


def _ready(runtime: ServiceRuntime) -> None:
    if not runtime.ready:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, runtime.fatal_error or "the model is loading")


@router.post(
    "/tags/fit",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TagFitStatus,
    responses={
        **_REVIEWER_ERRORS,
        409: {"model": ErrorResponse, "description": "a set of that name exists or is being fitted"},
        413: {"model": ErrorResponse, "description": "more examples, or longer ones, than the schema's limits here"},
        422: {"model": ErrorResponse, "description": "not JSON, a missing or mistyped field, a bad name (detail names it)"},
    },
    tags=["tags"],
)
async def fit_tag_set(
    body: TagFitRequest, runtime: ServiceRuntime = Depends(get_runtime), _reviewer: str = Depends(require_reviewer)
) -> dict:
    """Fit a tag set from examples in the background (reviewers' keys); follow it with ``GET /tags/fit/{job}``.
    Rows that cannot be fitted (an empty text or tag, a tag with one example or on every row) make the
    job ``failed`` at once, its ``error`` naming the row."""
    _ready(runtime)
    chars, most = example_limits(
        runtime.config.max_text_chars, body_limit(runtime.config.max_batch, runtime.config.max_text_chars)
    )
    if len(body.examples) > most or any(len(e.text) > chars for e in body.examples):
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"at most {most} examples of at most {chars} characters each here; fit larger sets with `patentclf tags fit`",
        )
    folder = runtime.tags_dir / body.name
    jobs = _jobs(runtime)
    if read_tag_set_info(folder) is not None or any(j.name == body.name and j.status == "running" for j in jobs.values()):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a tag set named {body.name!r} exists or is being fitted: choose another name"
        )
    job = TagFitJob(uuid.uuid4().hex, body.name, len(body.examples))
    jobs[job.job] = job
    records = [example.model_dump(exclude_none=True) for example in body.examples]
    try:  # rows that cannot be fitted: a failed job at once, its error naming the row (as for a file)
        for number, record in enumerate(records, start=1):
            if isinstance(record["tags"], list):
                if any(";" in tag for tag in record["tags"]):
                    raise DataError(f"examples: row {number}: a tag name with ';' (it separates tags)")
                record["tags"] = ";".join(record["tags"])
        check_counts(examples_of(records, "examples"), "examples")
    except DataError as exc:
        job.error, job.status = str(exc), "failed"
        return job.view()
    # A fit of this name that failed or was cut short left its staging folder, tied to its own upload:
    # no fit of this name runs now (checked above), so start afresh.
    shutil.rmtree(folder.with_name(folder.name + ".partial"), ignore_errors=True)
    upload = runtime.tags_dir / ".uploads" / f"{job.job}.jsonl"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")

    def progress(count: int) -> None:
        job.embedded += count

    async def run() -> None:
        try:
            result = await asyncio.to_thread(
                fit_tags, upload, folder, classifier=runtime.classifier, name=body.name, progress=progress
            )
            job.tag_set, job.status = result.tag_set.describe(), "fitted"
        except (DataError, TagSetError, OSError, ValueError) as exc:
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # anything else fails the job too: a job never stays "running"
            log_event("tag_fit_failed", job=job.job, error=f"{type(exc).__name__}: {exc}")
            job.error, job.status = f"the fit failed: {type(exc).__name__}: {exc}", "failed"
        finally:
            upload.unlink(missing_ok=True)

    job.task = asyncio.create_task(run(), name=f"patentclf-tags-{job.job}")
    return job.view()


@router.get(
    "/tags/fit/{job}",
    response_model=TagFitStatus,
    responses={**_REVIEWER_ERRORS, 404: {"model": ErrorResponse, "description": "no such job (since this process started)"}},
    tags=["tags"],
)
async def tag_fit_status(
    job: str, runtime: ServiceRuntime = Depends(get_runtime), _reviewer: str = Depends(require_reviewer)
) -> dict:
    """A fit's progress: running (examples embedded so far), fitted (with the set's figures) or failed (why)."""
    found = _jobs(runtime).get(job)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no tag fit {job!r} (jobs are kept until the service restarts)")
    return found.view()


def _make_live(classifier, folder) -> TagSet:
    """Load the set at ``folder`` (refused for another model) and answer with it beside the live ones."""
    fitted = TagSet.load(folder, model_digest=model_digest(classifier.path))
    classifier.use_tags([*(s for s in classifier.tags.sets if s.name != fitted.name), fitted])
    return fitted


@router.post(
    "/tags/{name}/live",
    response_model=dict[str, Any],
    responses={**_REVIEWER_ERRORS, 404: {"model": ErrorResponse, "description": "no fitted set of that name in tags_dir"}},
    tags=["tags"],
)
async def make_live(
    name: str, runtime: ServiceRuntime = Depends(get_runtime), _reviewer: str = Depends(require_reviewer)
) -> dict:
    """Answer with the fitted tag set ``name`` (in ``tags_dir``) from the next request on; a live set of
    the same name is replaced. Returns the set as ``/model`` lists it."""
    _ready(runtime)
    if not re.fullmatch(NAME, name) or read_tag_set_info(runtime.tags_dir / name) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no fitted tag set {name!r} in the service's tags_dir")
    classifier = runtime.classifier
    try:
        fitted = await asyncio.to_thread(_make_live, classifier, runtime.tags_dir / name)
    except TagSetError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    for job in _jobs(runtime).values():
        if job.name == name:
            job.live = True
    return fitted.describe()
