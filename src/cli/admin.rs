//! `paygate user show|grant|revoke` and `paygate customer link`: the admin
//! API's operations from a shell, against the store the config names.
//!
//! Writes go through `admin::users::write_override` and `admin::customers::write_link`,
//! exactly as `PUT/DELETE /users/{id}/override` and `PUT /customers/{id}/link`
//! do, so running gateways on the same Redis see a change within a second. On
//! the in-memory store the writes are refused: that store lives inside each
//! gateway process, out of this command's reach. Output is for humans; errors
//! go to stderr with exit 1.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use crate::admin::customers::{link_from_parts, valid_customer_id, write_link};
use crate::admin::users::{
    decision_json, override_from_parts, write_override, OverrideChange, UserView, AUDIT_SHOWN,
};
use crate::apply::Applier;
use crate::clock::{rfc3339, unix_now};
use crate::config::Config;
use crate::entitlement::{AccessRules, UnixTime};

use crate::store::EntitlementStore;

use super::{fail, out, CustomerAction, UserAction};

/// The store the config names. A memory store is this process's own copy, so
/// what it shows is announced as such.
fn open_store(config: &Config) -> Result<Arc<dyn EntitlementStore>, String> {
    if !config.store.is_redis() {
        eprintln!(
            "note: no store.redis_url: showing an in-memory store{} as this process loads it, \
             not the state of a running gateway",
            config
                .store
                .seed_file
                .as_ref()
                .map(|p| format!(" seeded from {}", p.display()))
                .unwrap_or_default()
        );
    }
    crate::store::open(&config.store)
}

/// Refuses a write when the store is the in-memory one: it lives inside each
/// gateway process, so a write here would print success and reach nobody.
fn refuse_memory_write(config: &Config, command: &str, endpoint: &str) -> Option<ExitCode> {
    if config.store.is_redis() {
        return None;
    }
    Some(fail(&format!(
        "`{command}` needs a shared store, and store.redis_url is not set: the in-memory store \
         lives inside each gateway process, so a write from this command cannot reach a running \
         gateway. Use the running gateway's admin API instead ({endpoint} on [admin] listen), \
         or set store.redis_url; nothing was written"
    )))
}

/// Runs one `paygate user` action; exit 0 on success, 1 with a message otherwise.
pub(super) async fn user_command(config: Config, action: UserAction) -> ExitCode {
    let id = match &action {
        UserAction::Show { id } | UserAction::Grant { id, .. } | UserAction::Revoke { id } => {
            id.clone()
        }
    };
    if id.is_empty() {
        return fail("the user id must not be empty");
    }
    let now = unix_now();
    // Validate before touching the store: a bad request changes nothing.
    let change = match &action {
        UserAction::Show { .. } => None,
        UserAction::Grant {
            until,
            features,
            reason,
            ..
        } => match override_from_parts(until, reason, features, now) {
            Ok(grant) => Some(OverrideChange::Grant(grant)),
            Err(e) => return fail(&format!("--{}: {}", e.field, e.message)),
        },
        UserAction::Revoke { .. } => Some(OverrideChange::Revoke),
    };
    let refused = match &change {
        Some(OverrideChange::Grant(_)) => {
            refuse_memory_write(&config, "paygate user grant", "PUT /users/{id}/override")
        }
        Some(OverrideChange::Revoke) => refuse_memory_write(
            &config,
            "paygate user revoke",
            "DELETE /users/{id}/override",
        ),
        None => None,
    };
    if let Some(code) = refused {
        return code;
    }
    let store = match open_store(&config) {
        Ok(store) => store,
        Err(e) => return fail(&e),
    };
    let rules = &config.access.rules;

    if let Some(change) = &change {
        match write_override(store.as_ref(), None, &id, change, now).await {
            Ok(written) => {
                let what = match (change, written.changed) {
                    (OverrideChange::Grant(grant), _) => {
                        format!("granted override to {id} until {}", time_text(grant.until))
                    }
                    (OverrideChange::Revoke, true) => format!("revoked the override of {id}"),
                    (OverrideChange::Revoke, false) => {
                        format!("{id} had no override; nothing changed")
                    }
                };
                out(format_args!("{what}\n"));
            }
            Err(e) => return fail(&format!("store: {e}")),
        }
    }
    match UserView::load(store.as_ref(), &id).await {
        Ok(view) => {
            out(format_args!("{}", render(&view, rules, now)));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("store: {e}")),
    }
}

/// Runs one `paygate customer` action; exit 0 on success, 1 with a message otherwise.
pub(super) async fn customer_command(config: Config, action: CustomerAction) -> ExitCode {
    let CustomerAction::Link { id, user, reason } = action;
    if !valid_customer_id(&id) {
        return fail("the customer id must be 1 to 256 visible ASCII characters other than ','");
    }
    // Validate before touching the store: a bad request changes nothing.
    let link = match link_from_parts(&user, &reason) {
        Ok(link) => link,
        Err(e) => return fail(&format!("--{}: {}", e.field, e.message)),
    };
    if let Some(code) =
        refuse_memory_write(&config, "paygate customer link", "PUT /customers/{id}/link")
    {
        return code;
    }
    let store = match open_store(&config) {
        Ok(store) => store,
        Err(e) => return fail(&e),
    };
    let now = unix_now();
    match write_link(&Applier::new(store.clone()), None, &id, &link, now).await {
        Ok(Some(linked)) => {
            let from = linked.previous.as_deref().unwrap_or("(nobody)");
            out(format_args!("linked {id} to {} (was {from})\n", link.user));
        }
        Ok(None) => {
            return fail(&format!(
                "no customer {id} is stored (no event has named it); nothing was written"
            ))
        }
        Err(e) => return fail(&format!("store: {e}")),
    }
    match UserView::load(store.as_ref(), &link.user).await {
        Ok(view) => {
            out(format_args!("{}", render(&view, &config.access.rules, now)));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("store: {e}")),
    }
}

/// The human-readable report `user show` (and `grant`/`revoke` after writing) prints.
fn render(view: &UserView, rules: &AccessRules, now: UnixTime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "user: {}", view.user_id);
    match &view.entitlement {
        Some(ent) => {
            let pretty =
                serde_json::to_string_pretty(ent).unwrap_or_else(|e| format!("(unprintable: {e})"));
            let _ = writeln!(out, "stored entitlement:\n{pretty}");
        }
        None => {
            let _ = writeln!(out, "stored entitlement: none (never seen)");
        }
    }
    let decision = decision_json(view.entitlement.as_ref(), rules, now);
    let status = decision["status"].as_str().unwrap_or("unknown");
    let features: Vec<&str> = decision["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .collect();
    if decision["allowed"] == true {
        let features = if features.is_empty() {
            "none".to_string()
        } else {
            features.join(", ")
        };
        let _ = writeln!(
            out,
            "decision now: allowed (status {status}; features: {features})"
        );
    } else {
        let code = decision["code"].as_str().unwrap_or("DENIED");
        let _ = writeln!(out, "decision now: denied, 402 {code} (status {status})");
    }
    if let Some(grant) = view
        .entitlement
        .as_ref()
        .and_then(|e| e.grant_override.as_ref())
    {
        let state = if now < grant.until { "active" } else { "ended" };
        let features = if grant.features.is_empty() {
            String::new()
        } else {
            format!("; features: {}", grant.features.join(", "))
        };
        let _ = writeln!(
            out,
            "override: until {} ({state}); reason: {}{features}",
            time_text(grant.until),
            grant.reason
        );
    }
    if view.links.is_empty() {
        let _ = writeln!(out, "customers linked: none");
    } else {
        let _ = writeln!(out, "customers linked:");
        for link in &view.links {
            let source = link
                .source
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_string());
            let at = link.linked_at.map(time_text).unwrap_or_default();
            let event = link.event_id.as_deref().unwrap_or("");
            let _ = writeln!(out, "  {}  by {source} at {at} ({event})", link.customer);
        }
    }
    if view.audit.is_empty() {
        let _ = writeln!(out, "audit trail: (empty)");
    } else {
        let _ = writeln!(out, "audit trail (newest first, last {AUDIT_SHOWN}):");
        for entry in &view.audit {
            let _ = writeln!(
                out,
                "  {}  {}\n      {}",
                time_text(entry.at),
                entry.source,
                entry.summary
            );
        }
    }
    out
}

fn time_text(at: UnixTime) -> String {
    rfc3339(Some(at))
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::{Entitlement, Override};
    use crate::store::AuditEntry;

    #[test]
    fn the_report_shows_record_decision_override_and_audit() {
        let now = 1_700_000_000;
        let view = UserView {
            user_id: "gina".into(),
            entitlement: Some(Entitlement {
                grant_override: Some(Override {
                    until: now + 86_400,
                    reason: "support comp".into(),
                    features: vec!["export".into()],
                }),
                ..Default::default()
            }),
            audit: vec![AuditEntry {
                at: now,
                source: "admin: support comp".into(),
                summary: "customers []".into(),
            }],
            links: vec![crate::admin::users::CustomerLink {
                customer: "cus_1".into(),
                source: Some(crate::billing::record::LinkSource::Admin),
                linked_at: Some(now),
                event_id: Some("op_1".into()),
            }],
        };
        let text = render(&view, &AccessRules::default(), now);
        assert!(text.contains("user: gina"), "{text}");
        assert!(
            text.contains("\"reason\": \"support comp\""),
            "pretty JSON record: {text}"
        );
        assert!(
            text.contains("decision now: allowed (status override; features: export)"),
            "{text}"
        );
        assert!(text.contains("override: until 2023-11-15T22:13:20Z (active); reason: support comp; features: export"), "{text}");
        assert!(
            text.contains("  cus_1  by admin at 2023-11-14T22:13:20Z (op_1)"),
            "{text}"
        );
        assert!(
            text.contains("  2023-11-14T22:13:20Z  admin: support comp"),
            "{text}"
        );

        let none = render(
            &UserView {
                user_id: "dave".into(),
                entitlement: None,
                audit: vec![],
                links: vec![],
            },
            &AccessRules::default(),
            now,
        );
        assert!(none.contains("stored entitlement: none"), "{none}");
        assert!(
            none.contains("decision now: denied, 402 CHECKOUT_REQUIRED (status none)"),
            "{none}"
        );
        assert!(none.contains("audit trail: (empty)"), "{none}");
    }
}
