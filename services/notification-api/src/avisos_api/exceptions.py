"""Domain errors of the notification API.

They are raised by the service layer, which knows nothing of HTTP; only the edge
(:mod:`avisos_api.api.errors`) turns them into RFC 9457 problem+json responses::

    AvisosError
     ├── NotFound              404  (also for other users' objects: never reveal them)
     ├── Conflict              409
     │    └── IdempotencyConflict  409  same Idempotency-Key, different request
     ├── InvalidInput          422
     ├── Unauthenticated       401
     ├── PermissionDenied      403  (e.g. API key without the scope)
     │    └── CsrfFailed       403
     └── RateLimited           429  (carries retry_after_secs)
"""

from __future__ import annotations


class AvisosError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class NotFound(AvisosError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(AvisosError):
    status, slug, title = 409, "conflict", "Conflict"


class IdempotencyConflict(Conflict):
    slug, title = "idempotency-conflict", "Idempotency-Key reused with a different request"


class InvalidInput(AvisosError):
    status, slug, title = 422, "invalid-input", "Invalid input"


class Unauthenticated(AvisosError):
    status, slug, title = 401, "unauthenticated", "Authentication required"


class PermissionDenied(AvisosError):
    status, slug, title = 403, "forbidden", "Forbidden"


class CsrfFailed(PermissionDenied):
    slug, title = "csrf", "Missing or wrong CSRF token"


class RateLimited(AvisosError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str | None = None, retry_after_secs: int = 60) -> None:
        super().__init__(detail)
        self.retry_after_secs = retry_after_secs
