"""A small HTTP client for the patentclf API, used by the UI.

Every failure (API down, slow, busy, or refusing the request) becomes an :class:`ApiError` whose
message can be shown to a person as it is: the page never needs to show a traceback.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_API_URL = "http://localhost:9000"
DEFAULT_TIMEOUT = 60.0  # seconds; a CPU model answers a batch of a few dozen abstracts well within this


class ApiError(Exception):
    """The API could not answer; ``str(error)`` is a plain message for the page."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def _detail_text(detail: Any) -> str:
    """FastAPI's ``detail`` is a string, or a list of validation errors: make it one readable line."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item)))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class ApiClient:
    """``ApiClient(url).predict(text)``; each method returns the API's JSON or raises :class:`ApiError`."""

    def __init__(self, base_url: str = DEFAULT_API_URL, *, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> "ApiClient":
        """The UI's settings come from its own process environment (the API key never reaches the page)."""
        return cls(
            os.environ.get("PATENTCLF_API_URL") or DEFAULT_API_URL,
            api_key=os.environ.get("PATENTCLF_API_KEY") or None,
            timeout=float(os.environ.get("PATENTCLF_UI_TIMEOUT") or DEFAULT_TIMEOUT),
        )

    def with_key(self, api_key: str) -> "ApiClient":
        """The same API with another key (a reviewer's, typed into the review queue page)."""
        return type(self)(self.base_url, api_key=api_key, timeout=self.timeout)

    # -- the API's routes -----------------------------------------------------------------------

    def health(self, timeout: float | None = None) -> dict:
        return self._request("GET", "/health", timeout=timeout)

    def ready(self, timeout: float | None = None) -> dict:
        return self._request("GET", "/ready", timeout=timeout)

    def model_info(self, timeout: float | None = None) -> dict:
        return self._request("GET", "/model", timeout=timeout)

    def predict(self, text: str, options: dict | None = None) -> dict:
        """``options``: the request's answer options (``PredictOptions``' fields; none: the defaults)."""
        return self._request("POST", "/predict", json={"text": text, **({"options": options} if options else {})})

    def predict_batch(self, texts: list[str], options: dict | None = None) -> list[dict]:
        body = {"texts": list(texts), **({"options": options} if options else {})}
        return self._request("POST", "/predict/batch", json=body)["predictions"]

    def feedback(
        self,
        prediction_id: str,
        label: str,
        comment: str | None = None,
        codes: list[str] | None = None,
        tags: list[dict] | None = None,
    ) -> dict:
        """A correction: ``label`` (the section, class or subclass), and optionally ``codes`` (several, down
        to main groups, main code first, in ``label``'s section) and ``tags`` (``{"set", "name"}`` each: the
        patent's right tags in the live tag sets)."""
        if not self.api_key:
            raise ApiError("Feedback is switched off: the UI has no API key (set PATENTCLF_API_KEY where the UI runs).")
        body: dict[str, Any] = {"prediction_id": prediction_id, "label": label}
        if codes:
            body["codes"] = codes
        if tags:
            body["tags"] = [{"set": tag["set"], "name": tag["name"]} for tag in tags]
        if comment:
            body["comment"] = comment
        return self._request("POST", "/feedback", json=body, headers={"X-API-Key": self.api_key})

    def stats(self) -> dict:
        return self._request("GET", "/stats")

    def review_queue(self, limit: int = 20) -> dict:
        """The predictions a reviewer should look at first (``GET /feedback/queue``; a reviewer's key)."""
        if not self.api_key:
            raise ApiError("The review queue needs a reviewer's API key: set PATENTCLF_API_KEY where the UI runs.")
        return self._request("GET", "/feedback/queue", params={"limit": limit}, headers={"X-API-Key": self.api_key})

    def fit_tags(self, name: str, examples: list[dict]) -> dict:
        """Start fitting the tag set ``name`` on ``examples`` (``{"text", "tags", "id"?}`` each) in the
        service (``POST /tags/fit``; a reviewer's key): the job's status, to follow with :meth:`tag_fit_status`."""
        return self._reviewer_request("POST", "/tags/fit", "Fitting a tag set", json={"name": name, "examples": examples})

    def tag_fit_status(self, job: str) -> dict:
        """A tag fit's status (``GET /tags/fit/{job}``): running (examples embedded so far), fitted (with
        the set's cross-validated figures) or failed (why)."""
        return self._reviewer_request("GET", f"/tags/fit/{job}", "Following a tag fit")

    def make_tags_live(self, name: str) -> dict:
        """Answer with the fitted tag set ``name`` from the next request on (``POST /tags/{name}/live``)."""
        return self._reviewer_request("POST", f"/tags/{name}/live", "Making a tag set live")

    # -- plumbing -------------------------------------------------------------------------------

    def _reviewer_request(self, method: str, path: str, what: str, **kwargs) -> Any:
        """A request that needs a reviewer's key (refused here, with the way out, when the UI has none)."""
        if not self.api_key:
            raise ApiError(f"{what} needs a reviewer's API key: set PATENTCLF_API_KEY where the UI runs, or type one in.")
        return self._request(method, path, headers={"X-API-Key": self.api_key}, **kwargs)

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs) -> Any:
        url = self.base_url + path
        wait = self.timeout if timeout is None else timeout
        try:
            response = httpx.request(method, url, timeout=httpx.Timeout(wait, connect=min(wait, 5.0)), **kwargs)
        except httpx.ConnectTimeout:
            raise ApiError(
                f"The patentclf API at {self.base_url} did not accept a connection. Is it running and reachable?"
            ) from None
        except httpx.TimeoutException:
            raise ApiError(
                f"The patentclf API at {self.base_url} did not answer within {wait:g} s. "
                "It may be busy or still loading its model; please try again in a moment."
            ) from None
        except httpx.ConnectError:
            raise ApiError(
                f"The patentclf API at {self.base_url} is not reachable (connection refused). "
                "Is it running? Start it with `patentclf serve`."
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"Could not talk to the patentclf API at {self.base_url}: {exc}") from None
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            if body is None:
                raise ApiError(
                    f"The API at {self.base_url} sent an answer that is not JSON (HTTP {response.status_code}).",
                    response.status_code,
                )
            return body
        detail = _detail_text(body["detail"]) if isinstance(body, dict) and "detail" in body else response.reason_phrase
        status = response.status_code
        if status == 503 and "Retry-After" in response.headers:  # its request queue is full
            retry = response.headers["Retry-After"]
            later = f"in {retry} s" if retry.isdigit() else "in a moment"
            message = f"The API is busy ({detail}). Please try again {later}."
        elif status == 503:  # e.g. the model is still loading, or feedback is switched off there
            message = f"The API cannot serve this yet: {detail}."
        elif status == 401:
            message = f"The API refused the UI's API key ({detail}). Check PATENTCLF_API_KEY where the UI runs."
        elif status == 413:
            message = f"The text is too long for the API ({detail})."
        elif 400 <= status < 500:
            message = f"The API could not accept this request: {detail}"
        else:
            message = f"The API failed (HTTP {status}): {detail}"
        raise ApiError(message, status)
