"""User accounts and API tokens, kept in storage (tables of migration ``0007_accounts_api``).

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommended
profile); tokens are random and only their SHA-256 is kept, so a copy of the database opens
nothing. The bootstrap admin (``BOOTSTRAP_ADMIN``) has no hash of its own until someone sets
one: until then ``CONSTANCIAS_WEB_PASSWORD`` is its password, so today's deployments go on.
Disabling a user or changing a password ends that user's web sessions at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.core.roles import BOOTSTRAP_ADMIN, ROLES
from worker.storage.repository import Base, Storage, WebSession, utcnow

__all__ = ["User", "ApiToken", "UserView", "TokenView", "AccountError", "add_user", "list_users",
           "get_user", "disable_user", "set_password", "authenticate", "ensure_bootstrap_admin",
           "has_own_admin", "add_token", "list_tokens", "revoke_token", "token_owner",
           "token_hash", "password_matches", "TOKEN_PREFIX",
           "IdempotencyKey", "remembered_batch", "remember_batch"]

_hasher = PasswordHasher()
#: Verified against when the account does not exist: an unknown name costs as long as a
#: known one, so timing does not tell which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
#: Tokens start with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "cst_"  # noqa: S105 - a prefix, not a secret


class AccountError(ValueError):
    """A request about accounts that cannot be honoured; the message is Spanish, for people."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Argon2id hash; ``None`` only for the bootstrap admin (``CONSTANCIAS_WEB_PASSWORD``)."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                                nullable=True, index=True)
    """Whose token it is; ``None``: an integration's own (created on the command line)."""
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class IdempotencyKey(Base):
    """``Idempotency-Key`` of a ``POST /api/v1/batches``: the same key from the same token gets
    the same batch back; the same key with another body is a conflict (409)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("token_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class UserView:
    """A user as the rest of the code sees it (no hash)."""

    id: int
    name: str
    role: str
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    scopes: list[str]
    owner: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


def _view(user: User) -> UserView:
    return UserView(id=user.id, name=user.name, role=user.role, active=user.active,
                    created_at=user.created_at)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise AccountError("El nombre debe tener de 1 a 64 caracteres, sin espacios.")
    return name


def add_user(storage: Storage, name: str, role: str, password: str | None) -> UserView:
    name = _check_name(name)
    if role not in ROLES:
        raise AccountError(f"Rol desconocido: {role!r} (use {', '.join(ROLES)}).")
    with storage.session() as s:
        if s.scalar(select(User.id).where(func.lower(User.name) == name.lower())) is not None:
            raise AccountError(f"Ya existe el usuario {name!r}.")
        user = User(name=name, role=role,
                    password_hash=_hasher.hash(password) if password else None)
        s.add(user)
        s.flush()
        return _view(user)


def list_users(storage: Storage) -> list[UserView]:
    with storage.session() as s:
        return [_view(u) for u in s.scalars(select(User).order_by(User.name))]


def get_user(storage: Storage, user_id: int) -> UserView | None:
    with storage.session() as s:
        user = s.get(User, user_id)
        return _view(user) if user is not None else None


def _by_name(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(func.lower(User.name) == name.strip().lower()))
    if user is None:
        raise AccountError(f"No existe el usuario {name!r}.")
    return user


def _end_sessions(s: Any, user_id: int) -> None:
    s.execute(delete(WebSession).where(WebSession.user_id == user_id))


def disable_user(storage: Storage, name: str) -> UserView:
    """Disable the account: its sessions end now and its tokens stop working."""
    with storage.session() as s:
        user = _by_name(s, name)
        user.active = False
        user.changed_at = utcnow()
        _end_sessions(s, user.id)
        return _view(user)


def set_password(storage: Storage, name: str, password: str) -> UserView:
    """A new password (it also re-enables nobody); every session of the user ends."""
    with storage.session() as s:
        user = _by_name(s, name)
        user.password_hash = _hasher.hash(password)
        user.changed_at = utcnow()
        _end_sessions(s, user.id)
        return _view(user)


def authenticate(storage: Storage, name: str, password: str,
                 bootstrap_password: str | None) -> UserView | None:
    """The active user with this name and password, or ``None``."""
    with storage.session() as s:
        user = s.scalar(select(User).where(func.lower(User.name) == name.strip().lower()))
        if user is None or not user.active:
            _verify(_DUMMY_HASH, password)
            return None
        if user.password_hash is None:
            ok = bool(bootstrap_password) and password_matches(password, bootstrap_password or "")
        else:
            ok = _verify(user.password_hash, password)
            if ok and _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = _hasher.hash(password)
        return _view(user) if ok else None


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison with a plain password (of digests: the length does not leak)."""
    a = hashlib.sha256(given.encode()).digest()
    b = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(a, b)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def ensure_bootstrap_admin(storage: Storage) -> None:
    """A start with no admin account at all creates ``admin``, opened by ``WEB_PASSWORD``
    (a disabled admin counts: disabling it must not bring it back)."""
    with storage.session() as s:
        if s.scalar(select(func.count()).select_from(User).where(User.role == "admin")) == 0:
            s.add(User(name=BOOTSTRAP_ADMIN, role="admin", password_hash=None))


def has_own_admin(storage: Storage) -> bool:
    """Whether an active admin has a password of its own (then ``WEB_PASSWORD`` is optional)."""
    with storage.session() as s:
        admins = s.scalar(select(func.count()).select_from(User).where(
            User.role == "admin", User.active.is_(True), User.password_hash.is_not(None)))
        return bool(admins)


# --- API tokens ---------------------------------------------------------------------------
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(storage: Storage, name: str, scopes: list[str],
              user_id: int | None = None) -> tuple[TokenView, str]:
    """A new token; returns it with its secret value, which is never stored nor shown again."""
    name = _check_name(name)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with storage.session() as s:
        if s.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
            raise AccountError(f"Ya existe el token {name!r}.")
        row = ApiToken(name=name, token_hash=token_hash(secret), user_id=user_id,
                       scopes=list(scopes))
        s.add(row)
        s.flush()
        return _token_view(s, row), secret


def _token_view(s: Any, row: ApiToken) -> TokenView:
    owner = s.get(User, row.user_id).name if row.user_id is not None else None
    return TokenView(id=row.id, name=row.name, scopes=list(row.scopes), owner=owner,
                     created_at=row.created_at, last_used_at=row.last_used_at,
                     revoked=row.revoked_at is not None)


def list_tokens(storage: Storage) -> list[TokenView]:
    with storage.session() as s:
        return [_token_view(s, t) for t in s.scalars(select(ApiToken).order_by(ApiToken.name))]


def revoke_token(storage: Storage, name: str) -> TokenView:
    with storage.session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == name.strip()))
        if row is None:
            raise AccountError(f"No existe el token {name!r}.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _token_view(s, row)


def token_owner(storage: Storage, secret: str) -> TokenView | None:
    """The live token with this secret (not revoked, its user still active), or ``None``.
    Its last use is recorded (shown on the tokens page)."""
    with storage.session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(secret)))
        if row is None or row.revoked_at is not None:
            return None
        if row.user_id is not None:
            user = s.get(User, row.user_id)
            if user is None or not user.active:
                return None
        row.last_used_at = utcnow()
        return _token_view(s, row)


def remembered_batch(storage: Storage, token_id: int, key: str,
                     request_hash: str) -> str | None:
    """The batch an earlier request with this key made; ``AccountError`` if that request had
    another body (the key was reused for something else)."""
    with storage.session() as s:
        row = s.scalar(select(IdempotencyKey).where(IdempotencyKey.token_id == token_id,
                                                    IdempotencyKey.key == key))
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise AccountError("Esa Idempotency-Key ya se usó con otra solicitud distinta.")
        return row.batch_id


def remember_batch(storage: Storage, token_id: int, key: str, request_hash: str,
                   batch_id: str) -> str:
    """Record the key; if a parallel request recorded it first, its batch wins."""
    try:
        with storage.session() as s:
            s.add(IdempotencyKey(token_id=token_id, key=key, request_hash=request_hash,
                                 batch_id=batch_id))
    except IntegrityError:
        earlier = remembered_batch(storage, token_id, key, request_hash)
        if earlier is not None:
            return earlier
        raise
    return batch_id
