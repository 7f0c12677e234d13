"""The strings of the provisioning target pages (``admin.targets``), in English and German."""

from __future__ import annotations

from einlass.admin.i18n import Translate, register
from einlass.provisioning.reconciler import (
    STATUS_ERROR,
    STATUS_NOT_BUILT,
    STATUS_OK,
    STATUS_PENDING,
    STATUS_UNREACHABLE,
    ReconcileResult,
)

STATUSES = (STATUS_PENDING, STATUS_OK, STATUS_ERROR, STATUS_UNREACHABLE, STATUS_NOT_BUILT)
ACTIONS = ("target.created", "target.updated", "target.drift", "target.credentials_reissued")
# The badge class of each status; the status is always written out as well.
STATUS_BADGES = {STATUS_OK: "good", STATUS_ERROR: "bad", STATUS_UNREACHABLE: "bad", STATUS_NOT_BUILT: "bad"}

register(
    {
        "title_targets": {"en": "Provisioning targets", "de": "Provisionierungsziele"},
        "title_target": {"en": "Target {name}", "de": "Ziel {name}"},
        "tgt_intro": {
            "en": "einlass writes the members who may enter the areas to each target and "
            "reconciles it after every change, on a schedule and on demand.",
            "de": "einlass schreibt die Mitglieder mit Zugang zu den Bereichen in jedes Ziel und "
            "gleicht es nach jeder Änderung, regelmäßig und auf Wunsch ab.",
        },
        "tgt_none": {
            "en": "No targets yet. Create one below, or with the API or the CLI.",
            "de": "Noch keine Ziele. Legen Sie unten eines an, oder über die API oder die CLI.",
        },
        "tgt_name": {"en": "Name", "de": "Name"},
        "tgt_kind": {"en": "Kind", "de": "Art"},
        "tgt_kind_htpasswd_file": {"en": "htpasswd file", "de": "htpasswd-Datei"},
        "tgt_kind_ftp": {"en": "htpasswd over FTP", "de": "htpasswd über FTP"},
        "tgt_kind_ftps": {"en": "htpasswd over FTPS", "de": "htpasswd über FTPS"},
        "tgt_kind_sftp": {"en": "htpasswd over SFTP", "de": "htpasswd über SFTP"},
        "tgt_kind_webhook": {"en": "webhooks", "de": "Webhooks"},
        "tgt_areas": {"en": "Areas", "de": "Bereiche"},
        "tgt_status": {"en": "Status", "de": "Status"},
        "tgt_status_pending": {
            "en": "waiting for the first reconcile",
            "de": "wartet auf den ersten Abgleich",
        },
        "tgt_status_ok": {"en": "in sync", "de": "abgeglichen"},
        "tgt_status_error": {"en": "error", "de": "Fehler"},
        "tgt_status_unreachable": {"en": "unreachable", "de": "nicht erreichbar"},
        "tgt_status_not_built": {"en": "not supported", "de": "nicht unterstützt"},
        "tgt_disabled": {"en": "disabled", "de": "deaktiviert"},
        "tgt_queued": {
            "en": "A reconcile is queued; this status updates by itself.",
            "de": "Ein Abgleich steht an; dieser Status aktualisiert sich selbst.",
        },
        "tgt_last_reconciled": {"en": "Last reconciled", "de": "Zuletzt abgeglichen"},
        "tgt_last_attempt": {"en": "Last attempt", "de": "Letzter Versuch"},
        "tgt_failures": {"en": "Failures in a row", "de": "Fehlschläge in Folge"},
        "tgt_last_error": {"en": "Last error", "de": "Letzter Fehler"},
        "tgt_drift": {"en": "Last drift found", "de": "Zuletzt gefundene Abweichung"},
        "tgt_drift_counts": {
            "en": "{added} added, {removed} removed, {changed} updated",
            "de": "{added} hinzugefügt, {removed} entfernt, {changed} aktualisiert",
        },
        "tgt_drift_at": {"en": "on {when}", "de": "am {when}"},
        "tgt_no_drift": {"en": "none so far", "de": "bisher keine"},
        "tgt_added": {"en": "Added (were missing)", "de": "Hinzugefügt (fehlten)"},
        "tgt_removed": {"en": "Removed (should not be there)", "de": "Entfernt (durften nicht dort sein)"},
        "tgt_changed": {
            "en": "Updated (stale password hash)",
            "de": "Aktualisiert (veralteter Passwort-Hash)",
        },
        "tgt_without_hash": {
            "en": "Not listed: no password hash in the target's scheme",
            "de": "Nicht eingetragen: kein Passwort-Hash im Verfahren des Ziels",
        },
        "tgt_problems": {"en": "Problems in the file", "de": "Probleme in der Datei"},
        "tgt_reconcile": {"en": "Reconcile now", "de": "Jetzt abgleichen"},
        "tgt_reconcile_all": {"en": "Reconcile all targets now", "de": "Alle Ziele jetzt abgleichen"},
        "tgt_details": {"en": "Details", "de": "Details"},
        "tgt_settings": {"en": "Settings", "de": "Einstellungen"},
        "tgt_secrets": {"en": "Stored secrets (names only)", "de": "Gespeicherte Geheimnisse (nur Namen)"},
        "tgt_hash_scheme": {"en": "Password hash scheme", "de": "Passwort-Hash-Verfahren"},
        "tgt_enabled": {"en": "Enabled", "de": "Aktiv"},
        "tgt_history": {
            "en": "Recent changes and reconciles that found drift",
            "de": "Letzte Änderungen und Abgleiche mit Abweichungen",
        },
        "tgt_history_empty": {"en": "Nothing recorded yet.", "de": "Noch nichts aufgezeichnet."},
        "tgt_when": {"en": "When", "de": "Wann"},
        "tgt_what": {"en": "What", "de": "Was"},
        "tgt_who": {"en": "By", "de": "Durch"},
        "tgt_action_target.created": {"en": "created", "de": "angelegt"},
        "tgt_action_target.updated": {"en": "changed", "de": "geändert"},
        "tgt_action_target.drift": {
            "en": "reconciled, drift found",
            "de": "abgeglichen, Abweichung gefunden",
        },
        "tgt_action_target.credentials_reissued": {
            "en": "new passwords mailed",
            "de": "neue Passwörter versandt",
        },
        "tgt_back": {"en": "All targets", "de": "Alle Ziele"},
        "tgt_new": {"en": "New htpasswd file target", "de": "Neues Ziel: htpasswd-Datei"},
        "tgt_new_hint": {
            "en": "FTP, FTPS, SFTP and webhook targets are set up with the API or the CLI.",
            "de": "Ziele über FTP, FTPS, SFTP und Webhooks richten Sie über die API oder die CLI ein.",
        },
        "tgt_path": {"en": "File path on this server", "de": "Dateipfad auf diesem Server"},
        "tgt_path_hint": {
            "en": "Absolute, e.g. /etc/nginx/einlass.htpasswd.",
            "de": "Absolut, z. B. /etc/nginx/einlass.htpasswd.",
        },
        "tgt_areas_hint": {
            "en": "Short names of the areas whose members the file lists, separated by commas.",
            "de": "Kurznamen der Bereiche, deren Mitglieder die Datei auflistet, durch Kommas getrennt.",
        },
        "tgt_hash_cost": {"en": "Hash cost", "de": "Hash-Kosten"},
        "tgt_hash_cost_hint": {
            "en": "Empty for the scheme's default (see the provisioning documentation).",
            "de": "Leer für den Standard des Verfahrens (siehe Dokumentation zur Provisionierung).",
        },
        "tgt_create": {"en": "Create target", "de": "Ziel anlegen"},
        "tgt_created": {
            "en": "Target {name} created; its first reconcile is queued.",
            "de": "Ziel {name} angelegt; der erste Abgleich steht an.",
        },
        "tgt_reconciled": {
            "en": "{name} reconciled: {members} members listed; {added} added, {removed} removed, "
            "{changed} updated.",
            "de": "{name} abgeglichen: {members} Mitglieder eingetragen; {added} hinzugefügt, "
            "{removed} entfernt, {changed} aktualisiert.",
        },
        "tgt_reconcile_failed": {
            "en": "Reconciling {name} failed ({status}): {error}. It is retried automatically.",
            "de": "Der Abgleich von {name} ist fehlgeschlagen ({status}): {error}. "
            "Er wird automatisch wiederholt.",
        },
        "tgt_reconciled_all": {"en": "Targets reconciled: {count}.", "de": "Abgeglichene Ziele: {count}."},
        "tgt_reconciled_all_failed": {
            "en": "Targets reconciled: {count}, of which failed: {failed}. "
            "Failed targets are retried automatically.",
            "de": "Abgeglichene Ziele: {count}, davon fehlgeschlagen: {failed}. "
            "Fehlgeschlagene Ziele werden automatisch wiederholt.",
        },
    }
)


def status_text(t: Translate, status: str) -> str:
    return t(f"tgt_status_{status}") if status in STATUSES else status


def action_text(t: Translate, action: str) -> str:
    return t(f"tgt_action_{action}") if action in ACTIONS else action


def reconcile_notice(t: Translate, result: ReconcileResult) -> str:
    """What one reconcile on demand found, for the flash message."""
    if result.failed or result.status != STATUS_OK:
        status = status_text(t, result.status)
        return t("tgt_reconcile_failed", name=result.name, status=status, error=result.error or "")
    return t(
        "tgt_reconciled",
        name=result.name,
        members=result.members,
        added=len(result.drift.missing),
        removed=len(result.drift.unexpected),
        changed=len(result.drift.changed),
    )
