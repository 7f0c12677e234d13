"""What the server-rendered HTML pages share: the member pages and the public ``/report`` pages.

One stylesheet (``templates/page.css``, inlined and allowed by its hash), one
layout (``templates/layout.html``, which each set of pages extends in its own
``base.html``), the security headers and the reading of a posted form.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request

from einlass.access.i18n import LANGUAGE_NAMES, LANGUAGES

TEMPLATE_DIR = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 20

CSS = (TEMPLATE_DIR / "page.css").read_text(encoding="utf-8").strip()
STYLE = Markup(CSS)  # noqa: S704 - a constant of ours, hashed into the CSP
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()


def security_headers(*, referrer_policy: str, form_action: str | None = None) -> dict[str, str]:
    """No scripts, no framing, nothing cached; the one inline style is allowed by its hash."""
    policy = (
        f"default-src 'self'; style-src 'sha256-{_CSS_HASH}'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
    if form_action is not None:
        policy += f"; form-action {form_action}"
    return {
        "content-security-policy": policy,
        "x-frame-options": "DENY",
        "referrer-policy": referrer_policy,
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",
    }


def environment(template_dir: Path) -> Environment:
    """HTML templates from ``template_dir``, which may extend the shared ``layout.html``."""
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(template_dir), FileSystemLoader(TEMPLATE_DIR)]),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def language_menu(path: str, current: str, keep: dict[str, str] | None = None) -> list[dict[str, object]]:
    """The layout's language switcher: ``path?lang=…`` for each language, plus the ``keep`` parameters."""
    return [
        {
            "code": code,
            "name": LANGUAGE_NAMES[code],
            "current": code == current,
            "href": f"{path}?{urlencode({'lang': code, **(keep or {})})}",
        }
        for code in LANGUAGES
    ]


class Form(dict[str, str]):
    """A posted form: the first value of each field, and every value through ``getlist``."""

    def __init__(self, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__({name: values[0] for name, values in (fields or {}).items()})
        self._lists = fields or {}

    def getlist(self, name: str) -> list[str]:
        return list(self._lists.get(name, []))


async def read_form(
    request: Request, *, max_bytes: int = MAX_FORM_BYTES, max_fields: int = MAX_FORM_FIELDS
) -> Form | None:
    """The urlencoded form; an empty one for anything else; None when too large."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return Form()
    try:
        fields = parse_qs(
            body.decode("utf-8", "replace"),
            keep_blank_values=True,
            max_num_fields=max_fields,
            encoding="utf-8",
            errors="replace",
        )
    except ValueError:
        return Form()
    return Form(fields)
