"""Who may see and change what: roles and advertiser scope, on top of the store.

Roles: `scraper` classifies; `advertiser:<id>` classifies, reads and fixes its own images only;
`staff` and `admin` read and fix any, and only they make global fixes; only `admin` promotes and
rolls back models. The API, the pages and the CLI all ask this module; a refusal is a
`PermissionDenied`, an unknown image a `NotFound`, and each edge turns them into its own answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from lotlens.errors import InvalidInput, NotFound, PermissionDenied
from lotlens.store import Answer, Store
from lotlens.store.fixes import check_fix
from lotlens.store.repository import FixRecord

STAFF_ROLES = ("staff", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key's name and its role."""

    name: str
    role: str

    @property
    def advertiser(self) -> str | None:
        return self.role.split(":", 1)[1] if self.role.startswith("advertiser:") else None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    def may_see(self, advertiser: str | None) -> bool:
        return self.is_staff or (self.advertiser is not None and self.advertiser == advertiser)


LOCAL_ADMIN = Principal("local", "admin")  # no keys configured: serve binds to localhost only


@dataclass(frozen=True)
class FixRequest:
    """A manual fix as asked: `changes` holds the fields given (`type` and/or `color`)."""

    image_key: str
    changes: dict[str, str | None]
    advertiser: str | None = None
    scope: str = "advertiser"
    comment: str | None = None
    confirmation: bool = False  # "Looks right": the changes repeat the current answer


class Access:
    """The rules, asked with the caller (`Principal`) and a `Store`. Every method is blocking."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def require_staff(who: Principal) -> None:
        if not who.is_staff:
            raise PermissionDenied("staff and admin only")

    @staticmethod
    def require_admin(who: Principal, what: str) -> None:
        if who.role != "admin":
            raise PermissionDenied(f"only admin {what}")

    @staticmethod
    def may_classify(who: Principal, advertiser: str) -> None:
        if who.role not in ("scraper", *STAFF_ROLES) and who.advertiser != advertiser:
            raise PermissionDenied(f"key {who.name!r} may not classify for advertiser {advertiser!r}")

    @staticmethod
    def advertiser_view(who: Principal, advertiser: str | None) -> str | None:
        """The advertiser whose view `who` reads: its own for an advertiser key, any for staff."""
        advertiser = advertiser or who.advertiser
        if not who.may_see(advertiser):
            raise PermissionDenied("advertiser keys read only their own images and history")
        return advertiser

    def image_view(self, who: Principal, image_key: str, advertiser: str | None) -> str | None:
        """`advertiser_view`, and an advertiser key sees only images in its own inventory."""
        advertiser = self.advertiser_view(who, advertiser)
        if who.advertiser is not None and not self.store.seen_by(who.advertiser, image_key):
            raise PermissionDenied("advertiser keys read only their own images")
        return advertiser

    def answer(self, who: Principal, image_key: str, advertiser: str | None) -> tuple[str | None, Answer]:
        """The advertiser view `who` reads of one image, and the answer there.

        Raises:
            PermissionDenied, NotFound (`unknown_image`).
        """
        advertiser = self.image_view(who, image_key, advertiser)
        found = self.store.answers([image_key], advertiser).get(image_key)
        if found is None:
            raise NotFound(f"unknown image {image_key!r}", "unknown_image")
        return advertiser, found

    def fix_history(self, who: Principal, advertiser: str | None, **filters: Any) -> list[FixRecord]:
        """The fix history `who` may read, oldest first: an advertiser key reads its own fixes and the
        global ones on images it shows, and never another advertiser's name."""
        rows = self.store.fixes(advertiser=advertiser, shown_by=who.advertiser, **filters)
        if who.advertiser is None:
            return rows
        return [f if f.advertiser == who.advertiser else replace(f, advertiser=None) for f in rows]

    def record_fix(
        self, who: Principal, fix: FixRequest, idempotency: tuple[str, str] | None = None
    ) -> tuple[str | None, list[FixRecord]]:
        """Check every rule and value, then write the whole fix in one transaction.

        Args:
            idempotency: (key, request hash) of an `Idempotency-Key` request.

        Returns:
            The advertiser whose view the fixer reads (None: the shared view) and the fix rows.
        """
        advertiser = self._check_fix(who, fix)
        rows = self.store.add_fixes(
            fix.image_key,
            fix.changes,
            actor=who.name,
            role=who.role,
            scope=fix.scope,
            advertiser=advertiser,
            comment=fix.comment,
            idempotency=(f"{who.name}|fixes", *idempotency) if idempotency else None,
            confirmation=fix.confirmation,
        )
        return advertiser, rows

    def _check_fix(self, who: Principal, fix: FixRequest) -> str | None:
        """Every rule `record_fix` applies before writing; returns the advertiser of the fix."""
        if not fix.changes:
            raise InvalidInput("a fix needs a type or a color", "empty_fix")
        advertiser = self.may_fix(who, fix)
        check_fix(fix.changes, fix.scope, advertiser)
        return advertiser

    def may_fix(self, who: Principal, fix: FixRequest) -> str | None:
        """The rights part of a fix (scope, advertiser, inventory), whatever its values; returns the
        advertiser of the fix. A form that changes nothing is still refused first when it may not be
        sent at all."""
        advertiser = fix.advertiser or who.advertiser
        if fix.scope == "global" and not who.is_staff:
            raise PermissionDenied("only staff and admin make global fixes")
        if fix.scope == "advertiser" and not advertiser:
            raise InvalidInput("an advertiser fix needs an advertiser")
        if not who.is_staff and (who.advertiser is None or who.advertiser != advertiser):
            raise PermissionDenied(f"key {who.name!r} may not fix images of advertiser {advertiser!r}")
        if who.advertiser and not self.store.seen_by(who.advertiser, fix.image_key):
            raise PermissionDenied("this image is not in your inventory")
        return advertiser

    def record_fixes(self, who: Principal, fixes: list[FixRequest]) -> list[FixRecord]:
        """A bulk fix: every request is checked (rules and values) before the first is written, so a
        refused or bad one writes nothing; then each image's fix lands in its own transaction."""
        for fix in fixes:
            self._check_fix(who, fix)
        return [row for fix in fixes for row in self.record_fix(who, fix)[1]]

    def undo_fixes(self, who: Principal, advertiser: str | None, fix_ids: list[int]) -> list[FixRecord]:
        """Undo `who`'s own recent fixes by recording compensating ones (the history stays
        append-only): each field goes back to the value the fix replaced. A field someone changed
        again since is left alone.

        Raises:
            PermissionDenied: one of the fixes is not `who`'s own in this advertiser's view.
            NotFound: an unknown fix id (`unknown_fix`).
        """
        ids = set(fix_ids)
        found = {f.id: f for f in self.store.fixes(advertiser=advertiser, ids=sorted(ids))}
        missing = ids - found.keys()
        if missing:
            raise NotFound(f"unknown fix {min(missing)}", "unknown_fix")
        groups: dict[tuple[str, str], list[FixRecord]] = {}
        for f in sorted(found.values(), key=lambda f: f.id):
            if f.actor != who.name or (f.scope == "advertiser" and f.advertiser != advertiser):
                raise PermissionDenied("only your own fixes in this view can be undone")
            groups.setdefault((f.content_key, f.scope), []).append(f)
        requests = []
        for (key, scope), group in groups.items():
            current = self.store.answers([key], advertiser).get(key)
            changes: dict[str, str | None] = {}
            for name in dict.fromkeys(f.field for f in group):
                mine = [f for f in group if f.field == name]
                before, after = mine[0].old_value, mine[-1].new_value
                if current is not None and getattr(current, name) == after and after != before:
                    changes[name] = before
            if changes:
                ids_text = ", ".join(f"#{f.id}" for f in group)
                requests.append(FixRequest(key, changes, advertiser, scope, f"undo of fix {ids_text}"))
        return self.record_fixes(who, requests) if requests else []
