"""`vectra health`: ask a running foundation for `/health`, as a monitoring script would.

The exit code carries the status so that shell scripts and supervisors need no JSON parsing:
0 ok, 1 degraded, 2 down or unreachable.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from pydantic import ValidationError

from core.config import Settings
from core.contracts.health import HealthReport

EXIT_CODES = {"ok": 0, "degraded": 1, "down": 2}
UNREACHABLE = 2
TIMEOUT_S = 5.0


def health_url(settings: Settings) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}/health"


def probe(settings: Settings) -> tuple[int, str]:
    """(exit code, text to print): the report itself, or one line saying why there is none."""
    url = health_url(settings)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:  # 503 still carries the report
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return UNREACHABLE, f"vectra health: {url} unreachable: {getattr(exc, 'reason', exc)}"
    try:
        report = HealthReport.model_validate_json(body)
    except ValidationError:
        return UNREACHABLE, f"vectra health: {url} did not answer with a health report"
    return EXIT_CODES[report.status], report.model_dump_json(indent=2)
