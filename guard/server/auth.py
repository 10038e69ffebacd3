"""Who is asking: bearer tokens for the API, signed session cookies and CSRF tokens for the web page.

- API: `Authorization: Bearer gtk_...`; the secret's SHA-256 is looked up in the ledger on every request, so
  a revoked token stops working at once. No or a bad token: 401 with `WWW-Authenticate: Bearer`.
- Page: signing in with a token sets `guard_session` (HttpOnly, SameSite=Strict, Secure over HTTPS), an
  HMAC-SHA256-signed record of the token id, the reviewer, a random nonce and the time. The token must still be
  active on every request. Forms carry a CSRF token, HMAC(secret, nonce): bound to this session, useless in any
  other. A form post whose Origin (or Sec-Fetch-Site) says it came from another site is refused as well.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from guard.ledger import Ledger
from guard.server.desk import DeskError, Reviewer

__all__ = ["COOKIE", "SESSION_TTL", "Session", "Sessions", "bearer_reviewer", "check_same_origin"]

COOKIE = "guard_session"
SESSION_TTL = 8 * 3600  # a working day; sign in again after


def bearer_reviewer(ledger: Ledger, authorization: str | None) -> Reviewer:
    """The reviewer an `Authorization: Bearer` header names; DeskError 401 when absent, malformed or unknown."""
    challenge = {"WWW-Authenticate": 'Bearer realm="guard"'}
    if not authorization:
        raise DeskError(
            401,
            "unauthenticated",
            "send a reviewer token: Authorization: Bearer <token> "
            "(create one with `guard tokens create --reviewer NAME`)",
            headers=challenge,
        )
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise DeskError(401, "unauthenticated", "the Authorization header must be `Bearer <token>`", headers=challenge)
    token = ledger.token_for_secret(secret.strip())
    if token is None:
        raise DeskError(401, "bad_token", "this token is unknown or revoked", headers=challenge)
    return Reviewer(token.reviewer, token.token_id)


@dataclass(frozen=True, slots=True)
class Session:
    reviewer: Reviewer
    nonce: str
    issued_at: int


class Sessions:
    """Signs and checks session cookies and CSRF tokens with one per-app secret (random unless given)."""

    def __init__(self, ledger: Ledger, secret: bytes | None = None) -> None:
        self._ledger = ledger
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def issue(self, reviewer: Reviewer) -> str:
        """A new cookie value for the reviewer (a fresh nonce, hence a fresh CSRF token)."""
        record = {"t": reviewer.token_id, "r": reviewer.name, "n": secrets.token_urlsafe(16), "i": int(time.time())}
        payload = base64.urlsafe_b64encode(json.dumps(record, separators=(",", ":")).encode()).decode()
        return f"{payload}.{self._sign(payload.encode())}"

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie value; None when missing, forged, too old, or its token was revoked."""
        if not cookie or "." not in cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload.encode())):
            return None
        try:
            record = json.loads(base64.urlsafe_b64decode(payload.encode()))
            token_id, name, nonce, issued = str(record["t"]), str(record["r"]), str(record["n"]), int(record["i"])
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - issued > SESSION_TTL or self._ledger.session_ended(nonce):
            return None
        token = self._ledger.get_token(token_id)
        if token is None or not token.active or token.reviewer != name:
            return None
        return Session(Reviewer(name, token_id), nonce, issued)

    def end(self, session: Session) -> None:
        """Sign out on the server: this session's cookie, and every copy of it, stops working now."""
        self._ledger.end_session(session.nonce, until=session.issued_at + SESSION_TTL)

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.nonce}".encode())

    def check_form(self, request: Request, session: Session, token: str | None) -> None:
        """A form post is this session's own, sent from this site (`check_same_origin`, then `check_csrf`).

        Raises:
            DeskError: 403 `cross_site` or `csrf`.
        """
        check_same_origin(request)
        self.check_csrf(session, token)

    def check_csrf(self, session: Session, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf_token(session)):
            raise DeskError(
                403, "csrf", "this form did not come from your session of this page; reload the page and try again"
            )


def check_same_origin(request: Request) -> None:
    """Refuse a form post a browser says came from another site.

    `Sec-Fetch-Site` decides when the browser sends it (every current one does): the browser itself says where
    the post came from, also when it sends `Origin: null`. Without it, an `Origin` other than ours is refused
    (`null` included: a sandboxed frame of any site sends that)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise DeskError(403, "cross_site", "form posts from other sites are refused")
        return
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise DeskError(403, "cross_site", "form posts from other sites are refused")
