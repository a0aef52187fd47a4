"""One sign-in of a user on one device (a browser's session and its remember-me cookie).

The cookie carries the row's random ``token`` (see ``User.get_id``); a request is signed in only
while the row exists. Log-out deletes this device's row, a password change deletes the others,
an admin's "Sign out on every device" deletes them all.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime, utcnow

#: the browser's User-Agent is kept this long at most (for a future "your devices" list)
USER_AGENT_LENGTH = 200


def new_session_token() -> str:
    return secrets.token_urlsafe(24)


class UserSession(Model):
    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)
    #: the sign-in time: a row older than the longest sign-in (30 days) no longer signs in
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    user_agent: Mapped[str] = mapped_column(String(USER_AGENT_LENGTH), default="", server_default="")

    def __repr__(self) -> str:  # pragma: no cover
        return f"<UserSession {self.id} user={self.user_id}>"
