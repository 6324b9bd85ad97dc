"""Sign-in for the review pages: an API key, checked once, becomes a signed session cookie.

The cookie holds an HMAC of the key (never the key) and the session's CSRF token; it is HttpOnly
and SameSite=Lax, and Secure on HTTPS. Each request finds the configured key again, so removing or
rotating a key ends its sessions. The signing secret is `session_secret`, else derived from the
configured keys, so replicas that share their configuration accept each other's cookies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from lotlens.api import LOCAL_ADMIN, Principal, find_key
from lotlens.config import ApiKey, Settings

COOKIE = "lotlens_session"
SIGNIN_COOKIE = "lotlens_signin"  # the sign-in form's own CSRF token (double submit), before any session


@dataclass(frozen=True)
class Viewer:
    """Who reads a page, with the CSRF token every form of theirs must carry."""

    who: Principal
    csrf: str
    cookie: str | None = None  # a new session cookie to set with this response

    @property
    def staff(self) -> bool:
        return self.who.role in ("staff", "admin")

    @property
    def admin(self) -> bool:
        return self.who.role == "admin"


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.session_secret is not None:
            secret = settings.session_secret.get_secret_value()
        elif settings.api_keys:
            joined = "\n".join(sorted(k.key for k in settings.api_keys))
            secret = hashlib.sha256(b"lotlens-session\n" + joined.encode()).hexdigest()
        else:
            secret = secrets.token_hex(32)  # local mode: sessions last as long as the process
        self._secret = secret.encode()
        self._signer = URLSafeTimedSerializer(secret, salt="lotlens-session")
        self.max_age = int(settings.session_hours * 3600)

    @property
    def open(self) -> bool:
        """No keys configured: everyone is the local admin (serve binds to localhost only)."""
        return not self.settings.api_keys

    def _fingerprint(self, key: ApiKey) -> str:
        return hmac.new(self._secret, key.key.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, key: ApiKey | None) -> tuple[str, str]:
        """A new session for `key` (None in local mode): (cookie value, CSRF token)."""
        csrf = new_token()
        value = self._signer.dumps({"k": self._fingerprint(key) if key else "", "c": csrf})
        return value, csrf

    def viewer(self, cookie: str | None) -> Viewer | None:
        """The session's viewer, or None when it is missing, forged, expired or its key is gone."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        if self.open:
            return Viewer(LOCAL_ADMIN, data["c"])
        found = None
        for k in self.settings.api_keys:  # no early exit, as for the API's key check
            if hmac.compare_digest(self._fingerprint(k), str(data.get("k", ""))):
                found = k
        return Viewer(Principal(found.name, found.role), data["c"]) if found else None

    def sign_in(self, token: str) -> tuple[ApiKey, str] | None:
        """Check an API key typed into the sign-in form: (the key, a new session cookie) or None."""
        key = find_key(self.settings, token)
        if key is None:
            return None
        return key, self.issue(key)[0]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same_token(expected: str, given: str | None) -> bool:
    """A CSRF token check in constant time."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
