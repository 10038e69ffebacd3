"""Telling the teams' channels: webhook notifications of calls waiting for approval and runs that halt.

`Notifier(ledger, policies, page_url).deliver()` sends what the ledger holds since the last pass; each team's
`notify:` section in its policy names the webhook and the environment variable of its signing key. Receivers
check `verify_signature`.
"""

from guard.notify.notifier import Notifier, NotifyReport
from guard.notify.webhook import SIGNATURE, TIMESTAMP, Delivery, sign, verify_signature

__all__ = ["SIGNATURE", "TIMESTAMP", "Delivery", "Notifier", "NotifyReport", "sign", "verify_signature"]
