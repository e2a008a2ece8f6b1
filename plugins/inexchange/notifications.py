"""E-mail about the invoices of a run that need a person: an optional notifier of the report task.

:class:`ActionNeededNotifier` is attached to the report task as ``on_success_callback`` and
``on_failure_callback`` (the task fails on purpose when invoices need a person, unless
``fail_on_action_needed`` is off). It reads the list the task pushed to XCom under :data:`XCOM_KEY`
and sends one message through the smtp provider's ``SmtpHook`` (its connection, TLS, login and
retries). It is configured by the Variable :data:`VARIABLE`, JSON::

    {"email": {"to": ["ekonomi@example.se"],   required: one address or a list
               "cc": [],                        optional
               "from": "airflow@example.se",    optional: else the connection's extra "from_email"
               "smtp_conn_id": "smtp_default",  optional (smtp_default)
               "subject": "..."},               optional: may use {count} {run} {first_day} {last_day}
     "page_url": "https://airflow.example.se"}  optional: the Airflow UI's base URL, else [api] base_url

Without the Variable nothing is sent and one INFO line says how to turn it on; a value that cannot
be used is one ERROR line naming the key to fix. Nothing is sent when no invoice needs a person, or
when the report task could not compute the list (its log says why). A send that fails is one ERROR
line and never changes the report task's state. Invoice data is untrusted text: it is escaped in
the HTML part and never rendered as a template.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, cast

from airflow.sdk import BaseNotifier

from inexchange.values import one_line, text_or_none

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: the Airflow Variable that turns the e-mail on
VARIABLE = "inexchange_notify"
#: the report task's XCom holding :class:`ActionList` (pushed by :func:`inexchange.pipeline.report`)
XCOM_KEY = "needs_person"
#: the connection used when the Variable names none
DEFAULT_SMTP_CONN_ID = "smtp_default"
#: placeholders a subject of the Variable may use
SUBJECT_FIELDS = ("count", "run", "first_day", "last_day")
#: where the api-server mounts the report page: :data:`inexchange.ui.plugin.URL_PREFIX`, whose module
#: builds the page's app when imported
REPORT_PAGE_PREFIX = "/inexchange"
#: longest subject sent (a manual run's description lists its invoice numbers)
MAX_SUBJECT = 200
#: what the INFO line shows as an example of the Variable
EXAMPLE = '{"email": {"to": ["ekonomi@example.se"], "from": "airflow@example.se", "smtp_conn_id": "smtp_default"}}'

_TOP_KEYS = ("email", "page_url")
_EMAIL_KEYS = ("to", "cc", "from", "smtp_conn_id", "subject")


class ActionRow(TypedDict):
    """One invoice that needs a person, as the report task pushes it (texts or ``None``)."""

    invoice_number: str | None
    customer_number: str | None
    customer_name: str | None
    state: str | None
    inexchange_status: str | None
    message: str | None


class ActionList(TypedDict):
    """The report task's XCom :data:`XCOM_KEY`.

    ``count`` counts every invoice that needs a person; ``invoices`` and ``without_id`` (the extract's
    messages of ERP rows without a usable ``invoice_id``) hold at most a page of them.
    """

    run: str
    first_day: str
    last_day: str
    interval_start: str
    count: int
    invoices: list[ActionRow]
    without_id: list[str]


class NotifyConfigError(ValueError):
    """The Variable cannot be used; the message is one line naming the key to fix."""


@dataclass(frozen=True)
class EmailSettings:
    """Where the e-mail goes.

    :param to: recipients.
    :param cc: copy recipients.
    :param sender: the From address; ``None`` for the connection's ``from_email``.
    :param smtp_conn_id: the ``smtp`` connection.
    :param subject: the subject, with :data:`SUBJECT_FIELDS` placeholders; ``None`` for the default.
    """

    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    sender: str | None = None
    smtp_conn_id: str = DEFAULT_SMTP_CONN_ID
    subject: str | None = None


@dataclass(frozen=True)
class NotifySettings:
    """The Variable :data:`VARIABLE`, checked.

    :param email: the e-mail's recipients and connection.
    :param page_url: base URL of the Airflow UI for the link to the report page; ``None`` for ``[api] base_url``.
    """

    email: EmailSettings
    page_url: str | None = None


@dataclass(frozen=True)
class Message:
    """One e-mail: its subject, plain text and the same as HTML.

    :param subject: one line.
    :param text: the plain-text body.
    :param html: the body as HTML, every value escaped.
    """

    subject: str
    text: str
    html: str


# ---- the Variable ------------------------------------------------------------------------------


def read_variable() -> Any:
    """The Variable's raw value, or ``None`` when it is not set."""
    from airflow.sdk import Variable

    return Variable.get(VARIABLE, default=None)


def parse_settings(value: Any) -> NotifySettings:
    """Check the Variable's value (JSON text or its decoded object) and return the settings.

    :param value: the Variable's value.
    :raises NotifyConfigError: naming the key to fix, in one line.
    """
    import json

    from inexchange.exceptions import first_line

    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise NotifyConfigError(
                f"Variable {VARIABLE} is not valid JSON ({first_line(exc, 200)}): set it to a JSON "
                f"object such as {EXAMPLE}"
            ) from None
    config = _object(value, "", f"set it to a JSON object such as {EXAMPLE}")
    _known_keys(config, _TOP_KEYS, "")
    if "email" not in config:
        raise NotifyConfigError(
            f"Variable {VARIABLE}: key email is missing: give it the recipients, e.g. "
            '"email": {"to": ["ekonomi@example.se"]}'
        )
    email = _object(config["email"], "email", 'e.g. {"to": ["ekonomi@example.se"]}')
    _known_keys(email, _EMAIL_KEYS, "email.")
    if "to" not in email:
        raise NotifyConfigError(
            f'Variable {VARIABLE}: key email.to is missing: give the addresses to write to, e.g. ["ekonomi@example.se"]'
        )
    to = _addresses(email["to"], "email.to")
    if not to:
        raise NotifyConfigError(f"Variable {VARIABLE}: key email.to is empty: give at least one address")
    cc = _addresses(email.get("cc"), "email.cc")
    sender = email.get("from")
    if sender is not None:
        sender = _address(sender, "email.from")
    smtp_conn_id = email.get("smtp_conn_id", DEFAULT_SMTP_CONN_ID)
    if not isinstance(smtp_conn_id, str) or not smtp_conn_id.strip() or len(smtp_conn_id.split()) != 1:
        raise NotifyConfigError(
            f"Variable {VARIABLE}: key email.smtp_conn_id must be a connection id such as "
            f"smtp_default, not {_shown(smtp_conn_id)}"
        )
    subject = email.get("subject")
    if subject is not None:
        subject = _subject_template(subject)
    page_url = config.get("page_url")
    if page_url is not None:
        page_url = _page_url(page_url)
    return NotifySettings(
        EmailSettings(to=to, cc=cc, sender=sender, smtp_conn_id=smtp_conn_id.strip(), subject=subject),
        page_url=page_url,
    )


def _object(value: Any, key: str, hint: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        where = f"key {key} " if key else "its value "
        raise NotifyConfigError(f"Variable {VARIABLE}: {where}must be a JSON object, not {_shown(value)}: {hint}")
    return value


def _known_keys(config: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    unknown = sorted(str(key) for key in config if key not in known)
    if unknown:
        raise NotifyConfigError(
            f"Variable {VARIABLE}: unknown key {prefix}{unknown[0][:40]} "
            f"(known: {', '.join(prefix + key for key in known)})"
        )


def _addresses(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (_address(value, key),)
    if not isinstance(value, list):
        raise NotifyConfigError(
            f"Variable {VARIABLE}: key {key} must be a list of e-mail addresses, not {_shown(value)}"
        )
    return tuple(_address(item, f"{key}[{index}]") for index, item in enumerate(value))


def _address(value: Any, key: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    from inexchange.exceptions import first_line

    if not isinstance(value, str):
        raise NotifyConfigError(f"Variable {VARIABLE}: key {key} must be an e-mail address, not {_shown(value)}")
    try:
        validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise NotifyConfigError(
            f"Variable {VARIABLE}: key {key} is not an e-mail address ({_shown(value)}: {first_line(exc, 200)})"
        ) from None
    return value.strip()


def _subject_template(value: Any) -> str:
    from string import Formatter

    from inexchange.exceptions import first_line

    if not isinstance(value, str) or not value.strip():
        raise NotifyConfigError(f"Variable {VARIABLE}: key email.subject must be a text, not {_shown(value)}")
    try:
        fields = [name for _, name, _, _ in Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise NotifyConfigError(
            f"Variable {VARIABLE}: key email.subject cannot be used ({first_line(exc, 200)}); "
            "write {{ and }} for braces"
        ) from None
    unknown = [name for name in fields if name not in SUBJECT_FIELDS]
    if unknown:
        raise NotifyConfigError(
            f"Variable {VARIABLE}: key email.subject has the unknown placeholder "
            f"{{{unknown[0][:40]}}} (use {', '.join('{' + f + '}' for f in SUBJECT_FIELDS)})"
        )
    try:
        value.format(count=3, run="invoices dated 2026-11-20", first_day="2026-11-20", last_day="2026-11-20")
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise NotifyConfigError(
            f"Variable {VARIABLE}: key email.subject cannot be used ({first_line(exc, 200)}); "
            "write {{ and }} for braces"
        ) from None
    return value


def _page_url(value: Any) -> str:
    from urllib.parse import urlsplit

    hint = "give the Airflow UI's base URL such as https://airflow.example.se"
    if not isinstance(value, str):
        raise NotifyConfigError(f"Variable {VARIABLE}: key page_url must be a text: {hint}")
    try:
        parts = urlsplit(value.strip())
        has_credentials = parts.username is not None or parts.password is not None
    except ValueError:
        parts, has_credentials = None, False
    if has_credentials or "@" in value:
        raise NotifyConfigError(f"Variable {VARIABLE}: key page_url must not hold a user or password: {hint}")
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyConfigError(f"Variable {VARIABLE}: key page_url is not an http(s) URL: {hint}")
    if parts.query or parts.fragment:
        raise NotifyConfigError(f"Variable {VARIABLE}: key page_url must be a base URL without ? or #: {hint}")
    return value.strip().rstrip("/")


def _shown(value: Any) -> str:
    """A value of the Variable as the error line shows it: its JSON type, or a short quote of a text."""
    if isinstance(value, str):
        return repr(value[:60] + ("…" if len(value) > 60 else ""))
    names = {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# ---- the message -------------------------------------------------------------------------------


def read_action_list(value: Any) -> ActionList | None:
    """The report task's XCom as an :class:`ActionList`, or ``None`` when it holds none.

    :param value: what the XCom holds.
    """
    if not isinstance(value, dict) or not isinstance(value.get("count"), int):
        return None
    invoices = [row for row in value.get("invoices") or [] if isinstance(row, dict)]
    return ActionList(
        run=str(value.get("run") or "this run's invoices"),
        first_day=str(value.get("first_day") or ""),
        last_day=str(value.get("last_day") or ""),
        interval_start=str(value.get("interval_start") or ""),
        count=value["count"],
        invoices=[_action_row(row) for row in invoices],
        without_id=[str(item) for item in value.get("without_id") or []],
    )


def _action_row(row: dict[str, Any]) -> ActionRow:
    """An invoice of the XCom as an :class:`ActionRow`: each of its keys as text, or None."""
    return cast("ActionRow", {key: text_or_none(row.get(key)) for key in ActionRow.__annotations__})


def report_link(base_url: str | None, action: ActionList) -> str:
    """The report page of the run's invoices: ``<base>/inexchange/?date_from=...&date_to=...``.

    The page filters on the day a report row's data interval starts (UTC), which for the DAG's
    timetable is the invoice day; without a base URL, the path alone.

    :param base_url: the Airflow UI's base URL, or ``None``.
    :param action: the run's list (its ``interval_start``, else its first invoice day).
    """
    from urllib.parse import urlencode

    day = action["interval_start"][:10] or action["first_day"]
    query = urlencode({"date_from": day, "date_to": day})
    return f"{(base_url or '').rstrip('/')}{REPORT_PAGE_PREFIX}/?{query}"


def ui_base_url(settings: NotifySettings) -> str | None:
    """The Airflow UI's base URL: the Variable's ``page_url``, else ``[api] base_url``, else ``None``.

    :param settings: the checked Variable.
    """
    from airflow.sdk import conf

    if settings.page_url:
        return settings.page_url
    configured = conf.get("api", "base_url", fallback=None)
    return configured.strip().rstrip("/") if configured and configured.strip() else None


def compose(
    action: ActionList, *, link: str, subject: str | None = None, run_id: str | None = None, full_link: bool = True
) -> Message:
    """The e-mail about a run's invoices that need a person.

    :param action: the report task's list.
    :param link: the report page of the run.
    :param subject: the Variable's subject template, or ``None`` for the default.
    :param run_id: the DAG run, named in the text.
    :param full_link: whether ``link`` has a host (else the text says how to get one).
    """
    import html

    count, listed = action["count"], len(action["invoices"]) + len(action["without_id"])
    invoices = "invoice" if count == 1 else "invoices"
    scope = action["run"].removeprefix("invoices ")
    verb = "needs" if count == 1 else "need"
    values = {"count": count, "run": action["run"], "first_day": action["first_day"], "last_day": action["last_day"]}
    title = subject.format(**values) if subject else f"InExchange: {count} {invoices} {scope} {verb} a person"
    title = _one_line(title)
    if len(title) > MAX_SUBJECT:
        title = title[: MAX_SUBJECT - 1] + "…"

    intro = f"{count} {invoices} {_one_line(scope)} {verb} a person in the ERP or in InExchange."
    run_line = f"Run: {_one_line(run_id)}" if run_id else ""
    more = f"... and {count - listed} more: see the report page." if count > listed else ""
    page_note = "" if full_link else " (set page_url in the Variable inexchange_notify for a full link)"

    text = [intro, *([run_line] if run_line else []), ""]
    for row in action["invoices"]:
        text += [
            _row_heading(row),
            f"  State: {_state(row)}",
            "  Message: " + _clean(row["message"] or "(no message)").replace("\n", "\n    "),
            "",
        ]
    if action["without_id"]:
        text.append("ERP rows not taken into the ledger (no usable invoice_id), never sent:")
        text += ["  " + _clean(item).replace("\n", "\n    ") for item in action["without_id"]]
        text.append("")
    if more:
        text += [more, ""]
    text.append(f"Report page: {link}{page_note}")

    e = html.escape
    cells = "".join(
        f"<tr><td>{e(_one_line(row['invoice_number'] or ''))}</td><td>{e(_customer(row))}</td>"
        f"<td>{e(_one_line(row['state'] or ''))}</td><td>{e(_one_line(row['inexchange_status'] or ''))}</td>"
        f'<td style="white-space:pre-wrap">{e(_clean(row["message"] or ""))}</td></tr>'
        for row in action["invoices"]
    )
    parts = [f"<p>{e(intro)}</p>", f"<p>{e(run_line)}</p>" if run_line else ""]
    if cells:
        parts.append(
            '<table border="1" cellpadding="4" cellspacing="0"><tr><th>Invoice</th><th>Customer</th>'
            f"<th>State</th><th>InExchange</th><th>Message</th></tr>{cells}</table>"
        )
    if action["without_id"]:
        items = "".join(f"<li>{e(_clean(item))}</li>" for item in action["without_id"])
        parts.append(f"<p>ERP rows not taken into the ledger (no usable invoice_id), never sent:</p><ul>{items}</ul>")
    if more:
        parts.append(f"<p>{e(more)}</p>")
    parts.append(f'<p><a href="{e(link)}">Report page</a>{e(page_note)}</p>')
    body = "".join(parts)
    return Message(
        subject=title,
        text="\n".join(text) + "\n",
        html=f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>',
    )


def _row_heading(row: ActionRow) -> str:
    return f"Invoice {_one_line(row['invoice_number'] or '(no number)')}, customer {_customer(row)}"


def _customer(row: ActionRow) -> str:
    return _one_line(" ".join(part for part in (row["customer_number"], row["customer_name"]) if part)) or "(unknown)"


def _state(row: ActionRow) -> str:
    state = _one_line(row["state"] or "")
    return f"{state} (InExchange: {_one_line(row['inexchange_status'])})" if row["inexchange_status"] else state


def _clean(value: Any) -> str:
    """Untrusted text with its control characters (but line breaks and tabs) as spaces."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch if ch in "\n\t" or ch.isprintable() else " " for ch in text)


def _one_line(value: Any) -> str:
    """Untrusted text on one line (:func:`~inexchange.values.one_line` of :func:`_clean`)."""
    return one_line(_clean(value))


# ---- sending -----------------------------------------------------------------------------------


def send_email(settings: EmailSettings, message: Message) -> None:
    """Send ``message`` through the smtp provider's ``SmtpHook``: its connection, TLS, login and retries.

    The message goes out as its HTML (the hook sends one HTML part); the plain text is what the log
    shows.

    :param settings: recipients and connection.
    :param message: what to send.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=settings.smtp_conn_id) as hook:
        hook.send_email_smtp(
            to=list(settings.to),
            cc=list(settings.cc) or None,
            from_email=settings.sender,
            subject=message.subject,
            html_content=message.html,
            mime_charset="utf-8",
        )


class ActionNeededNotifier(BaseNotifier):
    """E-mail the invoices of a run that need a person, once per run of the report task.

    Attach it to the report task as both ``on_success_callback`` and ``on_failure_callback``. It does
    nothing for another task (``default_args`` would attach it to every task), and nothing unless the
    Variable :data:`VARIABLE` is set (see the module's documentation).

    :param report_task_id: the task that pushes the list (:data:`XCOM_KEY`).
    """

    template_fields = ()

    def __init__(self, *, report_task_id: str = "report") -> None:
        super().__init__()
        self.report_task_id = report_task_id

    def notify(self, context: Context) -> None:
        """Send the e-mail when the Variable is set and the run's report lists invoices that need a person."""
        from inexchange.exceptions import first_line

        ti = context.get("ti")
        if ti is None:
            log.warning(
                "the InExchange e-mail needs a task's context: attach ActionNeededNotifier to the report "
                "task's on_success_callback and on_failure_callback"
            )
            return
        if ti.task_id != self.report_task_id:
            log.info("the InExchange e-mail is sent by the task %s only, not by %s", self.report_task_id, ti.task_id)
            return
        try:
            raw = read_variable()
            if raw is None:
                log.info(
                    "InExchange e-mail is off: set the Variable %s (JSON) to e-mail the invoices that need a "
                    "person, e.g. %s",
                    VARIABLE,
                    EXAMPLE,
                )
                return
            settings = parse_settings(raw)
        except NotifyConfigError as exc:
            log.error("InExchange e-mail not sent: %s", exc)
            return
        except Exception as exc:  # the Variable could not be read (the API server unreachable, ...)
            log.error(
                "InExchange e-mail not sent: Variable %s could not be read (%s: %s)",
                VARIABLE,
                type(exc).__name__,
                first_line(exc, 200),
            )
            return
        try:
            action = read_action_list(ti.xcom_pull(task_ids=self.report_task_id, key=XCOM_KEY))
        except Exception as exc:  # XCom unreadable where the callback runs
            log.error(
                "InExchange e-mail not sent: the report task's list could not be read (%s: %s); see its log",
                type(exc).__name__,
                first_line(exc, 200),
            )
            return
        if action is None:
            log.warning(
                "InExchange e-mail not sent: the report task did not list the invoices that need a person "
                "(it failed before it could, e.g. the reporting database was unreachable); see its log"
            )
            return
        if action["count"] == 0:
            log.info("InExchange e-mail not sent: no invoice of this run needs a person")
            return
        base = ui_base_url(settings)
        message = compose(
            action,
            link=report_link(base, action),
            subject=settings.email.subject,
            run_id=context.get("run_id"),
            full_link=base is not None,
        )
        recipients = len(settings.email.to) + len(settings.email.cc)
        try:
            send_email(settings.email, message)
        except Exception as exc:  # SMTP down, login refused, ...: the report's own outcome stands
            log.error(
                "InExchange e-mail about %d invoices that need a person NOT sent to %d recipient(s) through "
                "the connection %s: %s: %s. The report task's own outcome stands; its log lists the invoices.",
                action["count"],
                recipients,
                settings.email.smtp_conn_id,
                type(exc).__name__,
                first_line(exc, 200),
            )
            return
        log.info(
            "InExchange e-mail about %d invoices that need a person sent to %s through the connection %s",
            action["count"],
            ", ".join((*settings.email.to, *settings.email.cc)),
            settings.email.smtp_conn_id,
        )
