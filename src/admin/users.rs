//! What an operator can do to one user, shared by the admin API and `paygate user`:
//! read the stored entitlement with the decision it gives now and its audit
//! trail, and write or clear a manual override (comp access).
//!
//! One code path writes overrides whoever asks, so the API and the CLI cannot
//! drift apart: validate first (nothing is written on a bad request), then one
//! atomic `update`, one audit entry, then the invalidation every instance
//! listens to. This module must not know about HTTP or the terminal; callers
//! turn its results into responses or lines.

use std::sync::Mutex;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::apply::summarize;
use crate::billing::record::LinkSource;
use crate::clock::rfc3339;
use crate::entitlement::{evaluate, Access, AccessRules, Entitlement, Override, UnixTime};
use crate::store::{AuditEntry, EntitlementCache, EntitlementStore, StoreError};

/// How many audit entries `GET /users/{id}` and `user show` list.
pub(crate) const AUDIT_SHOWN: usize = 20;

/// Longest accepted `reason`: it is repeated in every audit line, so an essay
/// belongs in the ticket it refers to.
pub(crate) const REASON_MAX_CHARS: usize = 500;

/// A rejected override request, naming the field at fault (`until`, `reason`,
/// `features`, an unknown key, or `body`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses the admin API's `PUT /users/{id}/override` body,
/// `{"until": RFC3339, "reason": text, "features": [..]?}`, at `now`.
/// Unknown keys are refused so a typo (`"untill"`) is not silently ignored.
pub(crate) fn parse_override_body(body: &[u8], now: UnixTime) -> Result<Override, Invalid> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid("body", format!("is not JSON ({e})")))?;
    let Value::Object(object) = value else {
        return Err(invalid(
            "body",
            "must be a JSON object like {\"until\": \"2030-01-01T00:00:00Z\", \"reason\": \"…\"}",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "until" | "reason" | "features"))
    {
        return Err(invalid(
            unknown,
            "is not a known field (until, reason, features)",
        ));
    }
    let until = match object.get("until") {
        None | Some(Value::Null) => return Err(invalid("until", "is required (an RFC 3339 time)")),
        Some(Value::String(text)) => text.as_str(),
        Some(_) => {
            return Err(invalid(
                "until",
                "must be an RFC 3339 time string like 2030-01-01T00:00:00Z",
            ))
        }
    };
    let reason = match object.get("reason") {
        None | Some(Value::Null) => {
            return Err(invalid("reason", "is required (why the access is granted)"))
        }
        Some(Value::String(text)) => text.as_str(),
        Some(_) => return Err(invalid("reason", "must be a string")),
    };
    let features = features_of(&object)?;
    override_from_parts(until, reason, &features, now)
}

fn features_of(object: &Map<String, Value>) -> Result<Vec<String>, Invalid> {
    match object.get("features") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(invalid("features", "must be a list of strings")),
            })
            .collect(),
        Some(_) => Err(invalid("features", "must be a list of strings")),
    }
}

/// Validates an override from its parts (the CLI's `--until`, `--reason`,
/// `--features`, or the parsed API body) at `now`.
pub(crate) fn override_from_parts(
    until: &str,
    reason: &str,
    features: &[String],
    now: UnixTime,
) -> Result<Override, Invalid> {
    let until = parse_until(until, now)?;
    let reason = checked_reason(reason, "why the access is granted")?;
    let mut kept: Vec<String> = Vec::new();
    for feature in features {
        let feature = feature.trim();
        if feature.is_empty()
            || feature.contains(',')
            || feature.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "features",
                format!("{feature:?} is not a feature lookup key"),
            ));
        }
        if !kept.iter().any(|k| k == feature) {
            kept.push(feature.to_string());
        }
    }
    Ok(Override {
        until,
        reason: reason.to_string(),
        features: kept,
    })
}

/// An RFC 3339 time that is still ahead of `now` (an override that already
/// ended grants nothing; `revoke` is how access is taken away).
pub(crate) fn parse_until(text: &str, now: UnixTime) -> Result<UnixTime, Invalid> {
    let parsed = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
        invalid(
            "until",
            format!("{text:?} is not an RFC 3339 time like 2030-01-01T00:00:00Z"),
        )
    })?;
    let until = parsed.unix_timestamp();
    if until <= now {
        return Err(invalid(
            "until",
            format!("{text:?} is not in the future; use revoke to end an override"),
        ));
    }
    Ok(until)
}

/// A change an operator makes to a user's override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OverrideChange {
    Grant(Override),
    Revoke,
}

/// What [`write_override`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// The user's record after the change (`None`: nothing stored for them).
    pub entitlement: Option<Entitlement>,
    /// Whether the stored record changed (a revoke without an override does not).
    pub changed: bool,
}

/// Writes or clears a user's override: the one path the admin API and
/// `paygate user` share.
///
/// 1. one atomic `update` of the user's record (a webhook projecting into the
///    same user concurrently is not lost: the store retries the closure);
/// 2. an audit entry (`admin: <reason>`), for every grant and for a revoke that
///    removed something;
/// 3. the local cache entry is dropped (when the caller has one) and every
///    instance is told through `publish_invalidation`, so all of them decide
///    with the new record within a second instead of after `cache_ttl`.
///
/// The invalidation is published even when nothing changed: a retry after a
/// failed publish must still reach the other instances.
pub(crate) async fn write_override(
    store: &dyn EntitlementStore,
    cache: Option<&EntitlementCache>,
    user_id: &str,
    change: &OverrideChange,
    now: UnixTime,
) -> Result<Written, StoreError> {
    // The store may run the closure more than once; the last run is what was written.
    let changed = Mutex::new(false);
    let epoch = store.write_epoch();
    let apply = |current: Option<Entitlement>| -> Option<Entitlement> {
        let (next, did_change) = apply_change(current.clone(), change);
        *changed.lock().unwrap_or_else(|p| p.into_inner()) = did_change;
        next
    };
    let entitlement = store.update(user_id, &apply).await?;
    let changed = *changed.lock().unwrap_or_else(|p| p.into_inner());

    let source = match change {
        OverrideChange::Grant(grant) => Some(format!("admin: {}", grant.reason)),
        OverrideChange::Revoke if changed => Some("admin: override revoked".to_string()),
        OverrideChange::Revoke => None,
    };
    if let Some(source) = source {
        let entry = AuditEntry {
            at: now,
            source,
            summary: summarize(entitlement.as_ref()),
        };
        store.append_audit(user_id, &entry).await?;
    }
    store.confirm_writes(epoch).await?;
    if let Some(cache) = cache {
        cache.invalidate(user_id).await;
    }
    store.publish_invalidation(&[user_id.to_string()]).await?;
    Ok(Written {
        entitlement,
        changed,
    })
}

/// The pure part of [`write_override`]: the next record and whether it differs.
/// A revoke that leaves an empty record deletes it, so a user who only ever had
/// a comp grant reads as never seen again.
fn apply_change(
    current: Option<Entitlement>,
    change: &OverrideChange,
) -> (Option<Entitlement>, bool) {
    match change {
        OverrideChange::Grant(grant) => {
            let mut next = current.clone().unwrap_or_default();
            next.grant_override = Some(grant.clone());
            let changed = current.as_ref() != Some(&next);
            (Some(next), changed)
        }
        OverrideChange::Revoke => match current {
            None => (None, false),
            Some(mut ent) => {
                let removed = ent.grant_override.take().is_some();
                if ent == Entitlement::default() {
                    (None, removed)
                } else {
                    (Some(ent), removed)
                }
            }
        },
    }
}

/// Everything an operator sees about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserView {
    pub user_id: String,
    /// The stored record, read from the store (not a cache): `None` when never seen.
    pub entitlement: Option<Entitlement>,
    /// Newest first, at most [`AUDIT_SHOWN`].
    pub audit: Vec<AuditEntry>,
    /// The customers linked to the user and how each link was made (an
    /// operator link's reason is in the audit trail).
    pub links: Vec<CustomerLink>,
}

/// How one customer came to be linked to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CustomerLink {
    pub customer: String,
    /// `None` when the customer record holds no link stamp (or is missing).
    pub source: Option<LinkSource>,
    /// `created` of the event (or the time of the operator link) that made it.
    pub linked_at: Option<UnixTime>,
    pub event_id: Option<String>,
}

impl CustomerLink {
    fn to_json(&self) -> Value {
        json!({
            "customer": self.customer,
            "source": self.source,
            "linked_at": self.linked_at.map_or(Value::Null, |t| rfc3339(Some(t))),
            "event_id": self.event_id,
        })
    }
}

impl UserView {
    /// Reads the record and the audit trail from the store.
    pub(crate) async fn load(
        store: &dyn EntitlementStore,
        user_id: &str,
    ) -> Result<UserView, StoreError> {
        let entitlement = store.load(user_id).await?;
        let audit = store.audit(user_id, AUDIT_SHOWN).await?;
        let mut links = Vec::new();
        for customer in entitlement.iter().flat_map(|e| e.customers.iter()) {
            let stamp = store
                .load_customer(customer)
                .await?
                .and_then(|record| record.link_stamp);
            links.push(CustomerLink {
                customer: customer.clone(),
                source: stamp.as_ref().map(|s| s.1),
                linked_at: stamp.as_ref().map(|s| s.0),
                event_id: stamp.map(|s| s.2),
            });
        }
        Ok(UserView {
            user_id: user_id.to_string(),
            entitlement,
            audit,
            links,
        })
    }

    /// `{"user_id", "entitlement", "decision", "links", "audit"}`: the admin API's body.
    pub(crate) fn to_json(&self, rules: &AccessRules, now: UnixTime) -> Value {
        json!({
            "user_id": self.user_id,
            "entitlement": self.entitlement,
            "decision": decision_json(self.entitlement.as_ref(), rules, now),
            "links": self.links.iter().map(CustomerLink::to_json).collect::<Vec<_>>(),
            "audit": self.audit.iter().map(audit_json).collect::<Vec<_>>(),
        })
    }
}

/// The decision a record gives at `now` on a plain subscription route:
/// `allowed`, `status` (as in `X-Subscription-Status`), `features`, the
/// `code` a denied request gets, and the override with whether it still grants.
pub(crate) fn decision_json(
    ent: Option<&Entitlement>,
    rules: &AccessRules,
    now: UnixTime,
) -> Value {
    let access = evaluate(ent, rules, now);
    let (allowed, features, code) = match &access {
        Access::Granted { features, .. } => (true, features.clone(), Value::Null),
        Access::NeverSubscribed => (false, Vec::new(), json!("CHECKOUT_REQUIRED")),
        Access::Lapsed { .. } => (false, Vec::new(), json!("SUBSCRIPTION_REQUIRED")),
    };
    let grant = ent.and_then(|e| e.grant_override.as_ref()).map(|o| {
        json!({
            "until": rfc3339(Some(o.until)),
            "reason": o.reason,
            "features": o.features,
            "active": now < o.until,
        })
    });
    json!({
        "allowed": allowed,
        "status": access.status(),
        "features": features,
        "code": code,
        "override": grant,
    })
}

/// One audit entry with its time as RFC 3339.
pub(crate) fn audit_json(entry: &AuditEntry) -> Value {
    json!({"at": rfc3339(Some(entry.at)), "source": entry.source, "summary": entry.summary})
}

/// The audited reason of an operator action, trimmed: one line, not empty, at
/// most `REASON_MAX_CHARS` characters. `why` says what it should explain.
pub(crate) fn checked_reason<'a>(reason: &'a str, why: &str) -> Result<&'a str, Invalid> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(invalid("reason", format!("must not be empty ({why})")));
    }
    if reason.chars().count() > REASON_MAX_CHARS {
        return Err(invalid(
            "reason",
            format!("is longer than {REASON_MAX_CHARS} characters"),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(invalid(
            "reason",
            "must be one line without control characters",
        ));
    }
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::{Subscription, SubscriptionStatus};
    use crate::store::MemoryStore;

    const NOW: UnixTime = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn body(text: &str) -> Result<Override, Invalid> {
        parse_override_body(text.as_bytes(), NOW)
    }

    fn field(result: Result<Override, Invalid>) -> String {
        result.expect_err("should be refused").field
    }

    #[test]
    fn a_complete_body_parses() {
        let grant = body(r#"{"until": "2030-01-01T00:00:00Z", "reason": " support comp ", "features": ["export", "export", "api"]}"#).unwrap();
        assert_eq!(
            grant,
            Override {
                until: 1_893_456_000,
                reason: "support comp".into(),
                features: vec!["export".into(), "api".into()]
            }
        );
        let offset =
            body(r#"{"until": "2030-01-01T02:00:00+02:00", "reason": "x", "features": null}"#)
                .unwrap();
        assert_eq!((offset.until, offset.features), (1_893_456_000, vec![]));
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(
            field(body(r#"{"until": "2030-01-01T00:00:00Z"}"#)),
            "reason"
        );
        assert_eq!(
            field(body(
                r#"{"until": "2030-01-01T00:00:00Z", "reason": "   "}"#
            )),
            "reason"
        );
        assert_eq!(
            field(body(r#"{"until": "2030-01-01T00:00:00Z", "reason": 5}"#)),
            "reason"
        );
        assert_eq!(
            field(body(
                r#"{"until": "2030-01-01T00:00:00Z", "reason": "a\nb"}"#
            )),
            "reason"
        );
        let long = "x".repeat(REASON_MAX_CHARS + 1);
        assert_eq!(
            field(body(&format!(
                r#"{{"until": "2030-01-01T00:00:00Z", "reason": "{long}"}}"#
            ))),
            "reason"
        );
        assert_eq!(field(body(r#"{"reason": "comp"}"#)), "until");
        assert_eq!(
            field(body(r#"{"until": "2030-01-01", "reason": "comp"}"#)),
            "until"
        );
        assert_eq!(
            field(body(r#"{"until": "tomorrow", "reason": "comp"}"#)),
            "until"
        );
        assert_eq!(
            field(body(r#"{"until": 1893456000, "reason": "comp"}"#)),
            "until"
        );
        assert_eq!(
            field(body(
                r#"{"until": "2020-01-01T00:00:00Z", "reason": "comp"}"#
            )),
            "until",
            "past"
        );
        assert_eq!(
            field(body(
                r#"{"until": "2023-11-14T22:13:20Z", "reason": "comp"}"#
            )),
            "until",
            "now is not the future"
        );
        assert_eq!(
            field(body(
                r#"{"until": "2030-01-01T00:00:00Z", "reason": "c", "features": "export"}"#
            )),
            "features"
        );
        assert_eq!(
            field(body(
                r#"{"until": "2030-01-01T00:00:00Z", "reason": "c", "features": [1]}"#
            )),
            "features"
        );
        assert_eq!(
            field(body(
                r#"{"until": "2030-01-01T00:00:00Z", "reason": "c", "features": [""]}"#
            )),
            "features"
        );
        assert_eq!(
            field(body(r#"{"untill": "2030-01-01T00:00:00Z", "reason": "c"}"#)),
            "untill"
        );
        assert_eq!(field(body("not json")), "body");
        assert_eq!(field(body("[]")), "body");
    }

    #[test]
    fn cli_parts_use_the_same_rules() {
        let grant = override_from_parts(
            "2030-01-01T00:00:00Z",
            "comp",
            &["a".into(), "b".into()],
            NOW,
        )
        .unwrap();
        assert_eq!(grant.features, vec!["a", "b"]);
        assert_eq!(
            override_from_parts("2030-13-01T00:00:00Z", "comp", &[], NOW)
                .unwrap_err()
                .field,
            "until"
        );
        assert_eq!(
            override_from_parts("2030-01-01T00:00:00Z", "", &[], NOW)
                .unwrap_err()
                .field,
            "reason"
        );
    }

    fn comp(until: UnixTime) -> Override {
        Override {
            until,
            reason: "comp".into(),
            features: vec!["export".into()],
        }
    }

    fn paying() -> Entitlement {
        Entitlement {
            customers: vec!["cus_1".into()],
            subscriptions: vec![Subscription::new(
                "sub_1",
                "cus_1",
                SubscriptionStatus::Canceled,
                NOW - 100,
            )],
            ..Default::default()
        }
    }

    #[test]
    fn revoke_keeps_subscriptions_and_deletes_an_otherwise_empty_record() {
        let (granted, changed) = apply_change(None, &OverrideChange::Grant(comp(NOW + 10)));
        assert!(changed);
        assert!(
            !apply_change(granted.clone(), &OverrideChange::Grant(comp(NOW + 10))).1,
            "same grant again"
        );
        assert_eq!(apply_change(granted, &OverrideChange::Revoke), (None, true));
        assert_eq!(apply_change(None, &OverrideChange::Revoke), (None, false));
        let with_override = Entitlement {
            grant_override: Some(comp(NOW + 10)),
            ..paying()
        };
        assert_eq!(
            apply_change(Some(with_override), &OverrideChange::Revoke),
            (Some(paying()), true)
        );
        assert_eq!(
            apply_change(Some(paying()), &OverrideChange::Revoke),
            (Some(paying()), false)
        );
    }

    #[tokio::test]
    async fn grant_and_revoke_write_the_record_and_the_audit_trail() {
        let store = MemoryStore::new();
        store.update("u", &|_| Some(paying())).await.unwrap();
        let rules = AccessRules::default();

        let written = write_override(
            &store,
            None,
            "u",
            &OverrideChange::Grant(comp(NOW + 60)),
            NOW,
        )
        .await
        .unwrap();
        assert!(written.changed);
        let view = UserView::load(&store, "u").await.unwrap();
        assert_eq!(
            view.entitlement.as_ref().unwrap().grant_override,
            Some(comp(NOW + 60))
        );
        assert_eq!(view.audit.len(), 1);
        assert_eq!(view.audit[0].source, "admin: comp");
        let json = view.to_json(&rules, NOW);
        assert_eq!(json["decision"]["allowed"], true);
        assert_eq!(json["decision"]["status"], "override");
        assert_eq!(json["decision"]["features"], json!(["export"]));
        assert_eq!(json["decision"]["override"]["active"], true);
        assert_eq!(json["entitlement"]["override"]["reason"], "comp");
        assert_eq!(json["audit"][0]["at"], "2023-11-14T22:13:20Z");
        // After `until` the same record denies with the subscription's status.
        let later = view.to_json(&rules, NOW + 60);
        assert_eq!(
            (
                later["decision"]["allowed"].clone(),
                later["decision"]["code"].clone()
            ),
            (json!(false), json!("SUBSCRIPTION_REQUIRED"))
        );

        let revoked = write_override(&store, None, "u", &OverrideChange::Revoke, NOW + 1)
            .await
            .unwrap();
        assert_eq!(
            revoked,
            Written {
                entitlement: Some(paying()),
                changed: true
            }
        );
        let again = write_override(&store, None, "u", &OverrideChange::Revoke, NOW + 2)
            .await
            .unwrap();
        assert!(!again.changed);
        let view = UserView::load(&store, "u").await.unwrap();
        let sources: Vec<&str> = view.audit.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(
            sources,
            vec!["admin: override revoked", "admin: comp"],
            "a no-op revoke is not audited"
        );
    }

    #[test]
    fn a_user_never_seen_needs_checkout() {
        let json = UserView {
            user_id: "nobody".into(),
            entitlement: None,
            audit: vec![],
            links: vec![],
        }
        .to_json(&AccessRules::default(), NOW);
        assert_eq!(
            json,
            json!({"user_id": "nobody", "entitlement": null, "audit": [], "links": [],
                   "decision": {"allowed": false, "status": "none", "features": [], "code": "CHECKOUT_REQUIRED", "override": null}})
        );
    }
}
