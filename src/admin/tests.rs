//! Unit tests of the admin API: routing, the token check, and whole requests
//! through [`AdminApi::handle`] over a gateway with a memory store.

use std::path::Path;

use http::header::AUTHORIZATION;
use http_body_util::BodyExt;
use serde_json::Value;

use super::*;
use crate::config::Config;
use crate::store::{Delivery, EntitlementStore, MemoryStore};

const TOKEN: &str = "admin-token-0123456789abcdef";

#[test]
fn paths_map_to_routes() {
    assert_eq!(route("/metrics"), Ok(Route::Metrics));
    assert_eq!(route("/healthz"), Ok(Route::Healthz));
    assert_eq!(route("/readyz"), Ok(Route::Readyz));
    assert_eq!(route("/users/alice"), Ok(Route::User("alice".into())));
    assert_eq!(
        route("/users/alice/override"),
        Ok(Route::Override("alice".into()))
    );
    assert_eq!(
        route("/users/a%2Fb%20c%C3%A9/override"),
        Ok(Route::Override("a/b cé".into()))
    );
    assert_eq!(route("/users/42"), Ok(Route::User("42".into())));
    assert_eq!(route("/webhooks/deliveries"), Ok(Route::Deliveries));
    assert_eq!(route("/customers/unlinked"), Ok(Route::UnlinkedCustomers));
    assert_eq!(
        route("/customers/cus_1/link"),
        Ok(Route::CustomerLink("cus_1".into()))
    );
    assert_eq!(
        route("/customers/cus%5F1/link"),
        Ok(Route::CustomerLink("cus_1".into()))
    );
    for bad in [
        "/customers//link",
        "/customers/a%20b/link",
        "/customers/a%2/link",
    ] {
        assert!(
            matches!(route(bad), Err(AdminError::BadRequest { .. })),
            "{bad}"
        );
    }
    for missing in [
        "/customers/cus_1",
        "/customers/cus_1/link/x",
        "/customers/",
        "/",
        "/users",
        "/users/alice/",
        "/users/alice/other",
        "/users/alice/override/x",
        "/metrics/",
        "/nope",
    ] {
        assert_eq!(route(missing), Err(AdminError::NotFound), "{missing}");
    }
    for bad in [
        "/users/",
        "/users//override",
        "/users/%zz",
        "/users/%C3",
        "/users/%4",
    ] {
        assert!(
            matches!(route(bad), Err(AdminError::BadRequest { .. })),
            "{bad}: {:?}",
            route(bad)
        );
    }
}

#[test]
fn protected_prefixes_are_whole_segments() {
    for path in [
        "/users",
        "/users/x",
        "/webhooks/deliveries",
        "/webhooks/x",
        "/customers/unlinked",
        "//users/x",
    ] {
        assert!(needs_token(path), "{path}");
    }
    for path in ["/metrics", "/healthz", "/readyz", "/usersx", "/", "/nope"] {
        assert!(!needs_token(path), "{path}");
    }
}

#[test]
fn methods_are_checked_per_route() {
    assert!(Route::User("a".into()).accepts(&Method::GET));
    assert!(!Route::User("a".into()).accepts(&Method::PUT));
    assert!(Route::Override("a".into()).accepts(&Method::PUT));
    assert!(Route::Override("a".into()).accepts(&Method::DELETE));
    assert!(!Route::Override("a".into()).accepts(&Method::GET));
    assert!(!Route::Metrics.accepts(&Method::POST));
}

#[test]
fn deliveries_limit_defaults_and_bounds() {
    assert_eq!(deliveries_limit(None), Ok(DEFAULT_DELIVERIES));
    assert_eq!(deliveries_limit(Some("x=1")), Ok(DEFAULT_DELIVERIES));
    assert_eq!(deliveries_limit(Some("x=1&limit=5")), Ok(5));
    assert_eq!(deliveries_limit(Some("limit=1000")), Ok(1000));
    for bad in ["limit=0", "limit=1001", "limit=abc", "limit=-1", "limit="] {
        assert!(
            matches!(deliveries_limit(Some(bad)), Err(AdminError::BadRequest { ref field, .. }) if field == "limit"),
            "{bad}"
        );
    }
}

fn headers(authorization: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(value) = authorization {
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    }
    h
}

#[test]
fn the_token_must_match_exactly() {
    let expected = sha256(TOKEN.as_bytes());
    let ok = |value: Option<&str>| authorized(&headers(value), Some(&expected));
    assert!(ok(Some(&format!("Bearer {TOKEN}"))));
    assert!(
        ok(Some(&format!("bearer  {TOKEN} "))),
        "scheme is case-insensitive, spaces trimmed"
    );
    assert!(!ok(None));
    assert!(!ok(Some("Bearer")));
    assert!(!ok(Some("Bearer ")));
    assert!(!ok(Some(&format!("Basic {TOKEN}"))));
    assert!(!ok(Some(&format!("Bearer {TOKEN}x"))));
    assert!(!ok(Some(&format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]))));
    assert!(!ok(Some(&format!("Bearer {}", TOKEN.to_uppercase()))));
    // The public listener's parser: a tab separates like a space.
    assert!(ok(Some(&format!("Bearer\t{TOKEN}"))));
    assert!(!ok(Some(&format!("Bearer\t{TOKEN}x"))));
    // Two Authorization headers are refused, even both right.
    let mut two = headers(Some(&format!("Bearer {TOKEN}")));
    two.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
    );
    assert!(!authorized(&two, Some(&expected)));
    // No configured token: nobody gets in, whatever they send.
    assert!(!authorized(
        &headers(Some(&format!("Bearer {TOKEN}"))),
        None
    ));
    assert!(!authorized(&headers(Some("Bearer ")), None));
}

#[test]
fn digest_comparison_looks_at_every_byte() {
    let a = sha256(b"one");
    let mut b = a;
    assert!(digests_equal(&a, &b));
    for i in [0, 15, 31] {
        b = a;
        b[i] ^= 1;
        assert!(!digests_equal(&a, &b), "byte {i}");
    }
}

fn config(admin_token: Option<&str>) -> Config {
    let token = admin_token
        .map(|t| format!("token = \"{t}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[upstream]
url = "http://127.0.0.1:9"
[jwt]
secret = "a-test-secret-of-32-bytes-length"
[admin]
listen = "127.0.0.1:0"
{token}"#
    );
    Config::compile(&text, Path::new("."), &|_| None).expect("test config compiles")
}

async fn api(admin_token: Option<&str>) -> (AdminApi, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let live = Live::with_store(config(admin_token), store.clone())
        .await
        .expect("gateway builds");
    (AdminApi::new(live), store)
}

async fn call(
    api: &AdminApi,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (parts, body) = api.handle(request).await.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn json_of(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

#[tokio::test]
async fn open_paths_need_no_token_and_protected_ones_do() {
    let (api, _) = api(Some(TOKEN)).await;
    let (status, headers, body) = call(&api, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    assert_eq!(headers[CONTENT_TYPE], "text/plain; version=0.0.4");
    assert!(String::from_utf8_lossy(&body).contains("paygate_requests_total"));
    assert_eq!(call(&api, "GET", "/healthz", None, "").await.0, 200);
    assert_eq!(call(&api, "GET", "/readyz", None, "").await.0, 200);

    for path in [
        "/users/alice",
        "/users/%zz",
        "/users/a/override",
        "/webhooks/deliveries",
        "/customers/unlinked",
        "/users",
    ] {
        for token in [None, Some("wrong-token-0123456789")] {
            let (status, headers, body) = call(&api, "GET", path, token, "").await;
            assert_eq!(status, 401, "{path} {token:?}");
            assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
            assert_eq!(json_of(&body)["code"], "UNAUTHENTICATED");
        }
    }
    assert_eq!(
        call(&api, "GET", "/users/alice", Some(TOKEN), "").await.0,
        200
    );
    assert_eq!(call(&api, "GET", "/nope", None, "").await.0, 404);
    let (status, headers, body) = call(&api, "POST", "/users/a/override", Some(TOKEN), "").await;
    assert_eq!(
        (status.as_u16(), &headers[ALLOW]),
        (405, &HeaderValue::from_static("PUT, DELETE"))
    );
    assert_eq!(json_of(&body)["code"], "METHOD_NOT_ALLOWED");
    assert_eq!(call(&api, "GET", "/users/", Some(TOKEN), "").await.0, 400);
}

#[tokio::test]
async fn without_a_configured_token_user_paths_are_locked() {
    let (api, _) = api(None).await;
    assert_eq!(
        call(&api, "GET", "/users/alice", Some(TOKEN), "").await.0,
        401
    );
    assert_eq!(call(&api, "GET", "/metrics", None, "").await.0, 200);
}

#[tokio::test]
async fn override_put_get_delete() {
    let (api, store) = api(Some(TOKEN)).await;
    let body =
        r#"{"until": "2099-01-01T00:00:00Z", "reason": "support comp", "features": ["export"]}"#;
    let (status, _, got) = call(&api, "PUT", "/users/u%201/override", Some(TOKEN), body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
    let got = json_of(&got);
    assert_eq!(got["user_id"], "u 1");
    assert_eq!(got["changed"], true);
    assert_eq!(got["entitlement"]["override"]["reason"], "support comp");
    assert_eq!(got["decision"]["allowed"], true);
    assert_eq!(got["decision"]["override"]["until"], "2099-01-01T00:00:00Z");
    assert_eq!(got["audit"][0]["source"], "admin: support comp");
    assert!(store
        .load("u 1")
        .await
        .unwrap()
        .unwrap()
        .grant_override
        .is_some());

    let (status, _, shown) = call(&api, "GET", "/users/u%201", Some(TOKEN), "").await;
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&shown)["decision"]["features"],
        serde_json::json!(["export"])
    );

    let (status, _, got) = call(&api, "DELETE", "/users/u%201/override", Some(TOKEN), "").await;
    assert_eq!(status, 200);
    let got = json_of(&got);
    assert_eq!(
        (got["entitlement"].clone(), got["decision"]["code"].clone()),
        (Value::Null, "CHECKOUT_REQUIRED".into())
    );
    assert_eq!(got["audit"][0]["source"], "admin: override revoked");
}

#[tokio::test]
async fn bad_overrides_are_400_and_write_nothing() {
    let (api, store) = api(Some(TOKEN)).await;
    for (body, field) in [
        (r#"{"until": "2099-01-01T00:00:00Z"}"#, "reason"),
        (r#"{"until": "soon", "reason": "comp"}"#, "until"),
        (
            r#"{"until": "2001-01-01T00:00:00Z", "reason": "comp"}"#,
            "until",
        ),
        ("{", "body"),
    ] {
        let (status, _, got) = call(&api, "PUT", "/users/u/override", Some(TOKEN), body).await;
        assert_eq!(status, 400, "{body}");
        let got = json_of(&got);
        assert_eq!(
            (got["code"].as_str(), got["field"].as_str()),
            (Some("BAD_REQUEST"), Some(field)),
            "{got}"
        );
        assert!(got["error"].as_str().unwrap().starts_with(field), "{got}");
    }
    let huge = format!(
        r#"{{"until": "2099-01-01T00:00:00Z", "reason": "{}"}}"#,
        "x".repeat(MAX_BODY)
    );
    assert_eq!(
        call(&api, "PUT", "/users/u/override", Some(TOKEN), &huge)
            .await
            .0,
        413
    );
    assert_eq!(store.load("u").await.unwrap(), None);
    assert!(store.audit("u", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn deliveries_and_unlinked_customers_are_listed() {
    let (api, store) = api(Some(TOKEN)).await;
    for (i, result) in ["applied", "duplicate"].iter().enumerate() {
        let delivery = Delivery {
            event_id: format!("evt_{i}"),
            event_type: "invoice.paid".into(),
            result: result.to_string(),
            at: 1_700_000_000,
        };
        store.record_delivery(&delivery).await.unwrap();
    }
    store.set_unlinked("cus_b", true).await.unwrap();
    store.set_unlinked("cus_a", true).await.unwrap();

    let (status, _, got) = call(&api, "GET", "/webhooks/deliveries", Some(TOKEN), "").await;
    assert_eq!(status, 200);
    let list = json_of(&got)["deliveries"].clone();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        list[0],
        serde_json::json!({"event_id": "evt_1", "type": "invoice.paid", "result": "duplicate", "at": "2023-11-14T22:13:20Z"})
    );
    let (_, _, got) = call(&api, "GET", "/webhooks/deliveries?limit=1", Some(TOKEN), "").await;
    assert_eq!(json_of(&got)["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        call(&api, "GET", "/webhooks/deliveries?limit=0", Some(TOKEN), "")
            .await
            .0,
        400
    );

    let (status, _, got) = call(&api, "GET", "/customers/unlinked", Some(TOKEN), "").await;
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&got),
        serde_json::json!({"customers": ["cus_a", "cus_b"]})
    );
}

#[tokio::test]
async fn unlinked_customers_are_paged_with_a_cursor() {
    let (api, store) = api(Some(TOKEN)).await;
    for i in 0..25 {
        store
            .set_unlinked(&format!("cus_{i:02}"), true)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut path = "/customers/unlinked?limit=10".to_string();
    let mut pages = 0;
    loop {
        let (status, _, got) = call(&api, "GET", &path, Some(TOKEN), "").await;
        assert_eq!(status, 200);
        let page = json_of(&got);
        pages += 1;
        for id in page["customers"].as_array().unwrap() {
            seen.push(id.as_str().unwrap().to_string());
        }
        match page.get("next_cursor") {
            Some(cursor) => {
                path = format!(
                    "/customers/unlinked?cursor={}&limit=10",
                    cursor.as_str().expect("the cursor is a string")
                )
            }
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3, "25 ids at 10 a page");
    seen.sort();
    let all: Vec<String> = (0..25).map(|i| format!("cus_{i:02}")).collect();
    assert_eq!(seen, all);
    for (query, field) in [
        ("cursor=abc", "cursor"),
        ("cursor=-1", "cursor"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        let (status, _, got) = call(
            &api,
            "GET",
            &format!("/customers/unlinked?{query}"),
            Some(TOKEN),
            "",
        )
        .await;
        assert_eq!(status, 400, "{query}");
        assert!(
            String::from_utf8_lossy(&got).contains(field),
            "{query}: {got:?}"
        );
    }
}

#[test]
fn refused_deliveries_are_merged_in_by_time_with_their_reason() {
    let delivery = |id: &str, at| Delivery {
        event_id: id.into(),
        event_type: "customer.updated".into(),
        result: "applied".into(),
        at,
    };
    let refusal = |reason: &str, at| RefusedDelivery {
        reason: reason.into(),
        event_id: None,
        event_type: None,
        at,
    };
    let deliveries = [delivery("evt_3", 30), delivery("evt_1", 10)];
    let refused = [
        refusal("no_matching_signature", 40),
        refusal("timestamp_out_of_tolerance", 20),
    ];
    let list = merge_deliveries(&deliveries, &refused, 10);
    let order: Vec<&str> = list
        .iter()
        .map(|d| d["reason"].as_str().or(d["event_id"].as_str()).unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "no_matching_signature",
            "evt_3",
            "timestamp_out_of_tolerance",
            "evt_1"
        ]
    );
    assert_eq!(list[0]["result"], "refused");
    assert_eq!(list[0]["event_id"], Value::Null);
    assert_eq!(list[0]["type"], Value::Null);
    assert_eq!(list[1].get("reason"), None);
    assert_eq!(merge_deliveries(&deliveries, &refused, 3).len(), 3);
    assert!(merge_deliveries(&[], &[], 10).is_empty());
}
