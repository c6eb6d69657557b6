//! Property tests of the event parser on hostile JSON built from the real Stripe
//! payloads in `tests/fixtures/stripe/`: fields deleted, retyped (string, number,
//! null, bool, object, array), numbers beyond `i64`/`u64`/`f64`, nesting past the JSON
//! reader's depth limit, unicode, event types swapped between objects, and raw bytes.
//!
//! `event::parse` must never panic, and must answer what a reference model of the
//! envelope and of each type's required fields says: `NotJson` for what is not JSON,
//! `NotAnEvent` for a broken envelope or a known type whose object lacks a required
//! field, and for any other type an `Ignored` event (unknown types are not errors).
//!
//! Fast mode runs in `cargo test`; the `_long` variant is `#[ignore]`d and runs
//! `PAYGATE_PROPTEST_CASES` cases (default 100,000):
//! `cargo test --release --lib -- --ignored event_props`.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

use super::event::{parse, EventError, EventKind};
use super::testing::{check, FAST_CASES};

/// Every fixture, as an event: event payloads as they are, objects wrapped in the
/// envelope of the event type that carries them.
fn fixtures() -> Vec<Value> {
    const EVENTS: [&str; 12] = [
        include_str!("../../tests/fixtures/stripe/captured.event.checkout.session.completed.subscription-mode.json"),
        include_str!("../../tests/fixtures/stripe/constructed.event.customer.subscription.deleted.json"),
        include_str!("../../tests/fixtures/stripe/constructed.event.customer.subscription.updated.basil-shape.json"),
        include_str!("../../tests/fixtures/stripe/constructed.event.customer.subscription.updated.past_due.json"),
        include_str!("../../tests/fixtures/stripe/openapi-fixtures3.event.json"),
        include_str!("../../tests/fixtures/stripe/sync-engine.event.active_entitlement_summary_updated.json"),
        include_str!("../../tests/fixtures/stripe/sync-engine.event.checkout_session_completed.json"),
        include_str!("../../tests/fixtures/stripe/sync-engine.event.customer_deleted.json"),
        include_str!("../../tests/fixtures/stripe/sync-engine.event.customer_updated.json"),
        include_str!("../../tests/fixtures/stripe/sync-engine.event.invoice_paid.json"),
        include_str!("../../tests/fixtures/stripe/sync-engine.event.subscription_created.json"),
        include_str!("../../tests/fixtures/stripe/sync-engine.event.subscription_updated.json"),
    ];
    const OBJECTS: [(&str, &str); 7] = [
        ("checkout.session.completed", include_str!("../../tests/fixtures/stripe/openapi-fixtures3.checkout.session.json")),
        ("checkout.session.completed", include_str!("../../tests/fixtures/stripe/stripe-docs.checkout.session.payment-mode.json")),
        ("customer.subscription.updated", include_str!("../../tests/fixtures/stripe/stripe-docs.subscription.basil-shape.json")),
        ("customer.subscription.created", include_str!("../../tests/fixtures/stripe/openapi-fixtures3.subscription.json")),
        ("invoice.payment_failed", include_str!("../../tests/fixtures/stripe/openapi-fixtures3.invoice.json")),
        ("customer.created", include_str!("../../tests/fixtures/stripe/openapi-fixtures3.customer.json")),
        ("entitlements.active_entitlement_summary.updated", include_str!("../../tests/fixtures/stripe/openapi-fixtures3.entitlements.active_entitlement_summary.json")),
    ];
    let parse = |text: &str| serde_json::from_str::<Value>(text).expect("fixtures are JSON");
    let mut all: Vec<Value> = EVENTS.iter().map(|text| parse(text)).collect();
    for (i, (event_type, text)) in OBJECTS.iter().enumerate() {
        all.push(serde_json::json!({
            "id": format!("evt_wrapped_{i}"),
            "object": "event",
            "type": event_type,
            "created": 1_700_000_000 + i as i64,
            "livemode": false,
            "data": { "object": parse(text) },
        }));
    }
    all
}

/// Subtrees that may be spliced anywhere: other fixtures' objects.
fn splices() -> Vec<Value> {
    [
        include_str!("../../tests/fixtures/stripe/openapi-fixtures3.subscription_item.json"),
        include_str!(
            "../../tests/fixtures/stripe/openapi-fixtures3.entitlements.active_entitlement.json"
        ),
        include_str!("../../tests/fixtures/stripe/openapi-fixtures3.entitlements.feature.json"),
    ]
    .iter()
    .map(|text| serde_json::from_str(text).expect("fixtures are JSON"))
    .collect()
}

const KNOWN_TYPES: [&str; 15] = [
    "checkout.session.completed",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "entitlements.active_entitlement_summary.updated",
    "checkout.session.async_payment_succeeded",
];

/// Keys the parser looks at, so generated objects hit them often.
const KEYS: [&str; 28] = [
    "id",
    "object",
    "type",
    "created",
    "livemode",
    "data",
    "customer",
    "status",
    "items",
    "metadata",
    "user_id",
    "djstripe_subscriber",
    "current_period_end",
    "subscription",
    "parent",
    "subscription_details",
    "entitlements",
    "lookup_key",
    "feature",
    "has_more",
    "price",
    "plan",
    "product",
    "client_reference_id",
    "mode",
    "payment_status",
    "trial_start",
    "cancel_at_period_end",
];

/// Number texts no `serde_json::Number` can hold as given.
const RAW_NUMBERS: [&str; 10] = [
    "1e400",
    "-1e400",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890123456789",
    "9223372036854775807",
    "-0",
    "1.5e-400",
    "1E+2",
    "0.0000000000000000000000000000001",
];

/// One change to a JSON tree.
#[derive(Debug, Clone)]
enum Op {
    Delete,
    Replace(Value),
    /// A number text put in verbatim (through a placeholder string).
    RawNumber(usize),
    /// The node wrapped in this many arrays or objects.
    Nest(usize, bool),
    /// A fixture subtree.
    Splice(Index),
    /// The event's `type` set to this.
    SetType(String),
    /// A key the parser reads set (or added) in the object where the walk ends.
    Set(String, Value),
}

#[derive(Debug, Clone)]
struct Mutation {
    /// Start at `data.object` (where the parser reads most) rather than the envelope.
    in_object: bool,
    /// Where: at each level, which key or element to step into, until `depth`.
    path: Vec<Index>,
    depth: usize,
    op: Op,
}

#[derive(Debug, Clone)]
enum Input {
    /// A fixture with mutations, serialized compactly or pretty.
    Mutated {
        fixture: Index,
        mutations: Vec<Mutation>,
        pretty: bool,
    },
    /// Any bytes.
    Bytes(Vec<u8>),
    /// Brackets deeper than the JSON reader allows.
    Deep(usize, bool),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS.to_vec()).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just(String::new()),
            ".{0,20}",
            "(sub|cus|cs|evt|price|prod)_[A-Za-z0-9]{0,14}",
            proptest::sample::select(vec![
                "active",
                "trialing",
                "past_due",
                "canceled",
                "subscription",
                "paid",
                "event",
                "no_payment_required",
                "incomplete_expired",
            ])
            .prop_map(str::to_string),
        ]
        .prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Delete),
        5 => value().prop_map(Op::Replace),
        1 => (0..RAW_NUMBERS.len()).prop_map(Op::RawNumber),
        1 => prop_oneof![3 => 1usize..20, 1 => 100usize..300].prop_flat_map(|n| (Just(n), any::<bool>())).prop_map(|(n, array)| Op::Nest(n, array)),
        1 => any::<Index>().prop_map(Op::Splice),
        4 => (proptest::sample::select(KEYS.to_vec()).prop_map(str::to_string), leaf())
            .prop_map(|(key, value)| Op::Set(key, value)),
        2 => prop_oneof![
            proptest::sample::select(KNOWN_TYPES.to_vec()).prop_map(str::to_string),
            "[a-z._]{0,30}",
            Just(String::new()),
        ]
        .prop_map(Op::SetType),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop_oneof![3 => Just(true), 1 => Just(false)],
        proptest::collection::vec(any::<Index>(), 6),
        // Mostly near the top, where the parser reads.
        prop_oneof![3 => Just(1usize), 3 => 2usize..4, 1 => 4usize..7],
        op(),
    )
        .prop_map(|(in_object, path, depth, op)| Mutation {
            in_object,
            path,
            depth,
            op,
        })
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        12 => (any::<Index>(), proptest::collection::vec(mutation(), 0..6), any::<bool>())
            .prop_map(|(fixture, mutations, pretty)| Input::Mutated { fixture, mutations, pretty }),
        2 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Input::Bytes),
        1 => (100usize..5000, any::<bool>()).prop_map(|(n, array)| Input::Deep(n, array)),
    ]
}

/// The child of `node` that `at` picks, if it has children.
fn child<'v>(node: &'v mut Value, at: &Index) -> Option<&'v mut Value> {
    match node {
        Value::Object(map) if !map.is_empty() => {
            let i = at.index(map.len());
            map.values_mut().nth(i)
        }
        Value::Array(items) if !items.is_empty() => {
            let i = at.index(items.len());
            items.get_mut(i)
        }
        _ => None,
    }
}

/// Applies `mutation`; raw number texts are left as placeholder strings and
/// collected in `raws`, to be substituted in the serialized text.
fn apply(root: &mut Value, mutation: &Mutation, splices: &[Value], raws: &mut Vec<String>) {
    if let Op::SetType(name) = &mutation.op {
        if let Value::Object(map) = root {
            map.insert("type".into(), Value::String(name.clone()));
        }
        return;
    }
    // Walk to the parent of the target, then pick the target among its children.
    let mut parent = root;
    if mutation.in_object
        && parent
            .pointer("/data/object")
            .is_some_and(|object| matches!(object, Value::Object(map) if !map.is_empty()))
    {
        parent = parent.pointer_mut("/data/object").expect("checked above");
    }
    for at in mutation.path.iter().take(mutation.depth.saturating_sub(1)) {
        let has_grandchild = child(parent, at).is_some_and(|c| {
            matches!(c, Value::Object(m) if !m.is_empty())
                || matches!(c, Value::Array(a) if !a.is_empty())
        });
        if !has_grandchild {
            break;
        }
        parent = child(parent, at).expect("checked above");
    }
    let at = &mutation.path[mutation.depth.min(mutation.path.len()) - 1];
    if let Op::Set(key, value) = &mutation.op {
        if let Value::Object(map) = parent {
            map.insert(key.clone(), value.clone());
        }
        return;
    }
    if let Op::Delete = mutation.op {
        match parent {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(at.index(map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                items.remove(at.index(items.len()));
            }
            _ => {}
        }
        return;
    }
    let Some(target) = child(parent, at) else {
        return;
    };
    match &mutation.op {
        Op::Replace(value) => *target = value.clone(),
        Op::RawNumber(i) => {
            let placeholder = format!("@@raw{}@@", raws.len());
            raws.push(RAW_NUMBERS[*i].to_string());
            *target = Value::String(placeholder);
        }
        Op::Nest(n, array) => {
            let mut nested = target.take();
            for _ in 0..*n {
                nested = if *array {
                    Value::Array(vec![nested])
                } else {
                    Value::Object(Map::from_iter([("data".to_string(), nested)]))
                };
            }
            *target = nested;
        }
        Op::Splice(which) => *target = splices[which.index(splices.len())].clone(),
        Op::Delete | Op::SetType(_) | Op::Set(..) => {}
    }
}

/// The bytes an input stands for.
fn bytes_of(input: &Input, fixtures: &[Value], splices: &[Value]) -> Vec<u8> {
    match input {
        Input::Mutated {
            fixture,
            mutations,
            pretty,
        } => {
            let mut root = fixtures[fixture.index(fixtures.len())].clone();
            let mut raws = Vec::new();
            for mutation in mutations {
                apply(&mut root, mutation, splices, &mut raws);
            }
            let mut text = if *pretty {
                serde_json::to_string_pretty(&root)
            } else {
                serde_json::to_string(&root)
            }
            .expect("a Value serializes");
            for (i, raw) in raws.iter().enumerate() {
                text = text.replace(&format!("\"@@raw{i}@@\""), raw);
            }
            text.into_bytes()
        }
        Input::Bytes(bytes) => bytes.clone(),
        Input::Deep(n, array) => {
            let (open, close) = if *array { ("[", "]") } else { ("{\"a\":", "}") };
            format!("{}1{}", open.repeat(*n), close.repeat(*n)).into_bytes()
        }
    }
}

// ---- the reference model ----

#[derive(Debug, PartialEq)]
enum Expected {
    NotJson,
    NotAnEvent,
    /// Parsed, with this id, type, created, livemode and kind family.
    Event {
        id: String,
        event_type: String,
        created: i64,
        livemode: bool,
        family: &'static str,
    },
}

fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn has_id(value: Option<&Value>) -> bool {
    match value {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(object)) => text(object.get("id")).is_some(),
        _ => false,
    }
}

fn model(bytes: &[u8]) -> Expected {
    let Ok(root) = serde_json::from_slice::<Value>(bytes) else {
        return Expected::NotJson;
    };
    let Some(envelope) = root.as_object() else {
        return Expected::NotAnEvent;
    };
    if envelope
        .get("object")
        .is_some_and(|o| o.as_str() != Some("event"))
    {
        return Expected::NotAnEvent;
    }
    let (Some(id), Some(event_type), Some(created)) = (
        text(envelope.get("id")),
        text(envelope.get("type")),
        envelope.get("created").and_then(Value::as_i64),
    ) else {
        return Expected::NotAnEvent;
    };
    let Some(object) = envelope
        .get("data")
        .and_then(|d| d.get("object"))
        .and_then(Value::as_object)
    else {
        return Expected::NotAnEvent;
    };
    let (usable, family) = match event_type.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            (text(object.get("id")).is_some(), "checkout")
        }
        "checkout.session.async_payment_failed" => (true, "checkout_failed"),
        "customer.created" | "customer.updated" | "customer.deleted" => {
            (text(object.get("id")).is_some(), "customer")
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "customer.subscription.trial_will_end" => (
            text(object.get("id")).is_some()
                && has_id(object.get("customer"))
                && text(object.get("status")).is_some(),
            "subscription",
        ),
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
            (true, "invoice")
        }
        "entitlements.active_entitlement_summary.updated" => (
            has_id(object.get("customer"))
                && object
                    .get("entitlements")
                    .is_some_and(|list| list.get("data").is_some_and(Value::is_array)),
            "entitlements",
        ),
        // Unknown types are not errors.
        _ => (true, "ignored"),
    };
    if !usable {
        return Expected::NotAnEvent;
    }
    Expected::Event {
        id,
        event_type,
        created,
        livemode: envelope
            .get("livemode")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        family,
    }
}

fn family(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::CheckoutCompleted { .. } => "checkout",
        EventKind::CheckoutPaymentFailed { .. } => "checkout_failed",
        EventKind::Customer { .. } => "customer",
        EventKind::Subscription { .. } => "subscription",
        EventKind::Invoice { .. } => "invoice",
        EventKind::EntitlementSummary { .. } => "entitlements",
        EventKind::Ignored => "ignored",
    }
}

// ---- the property ----

fn parse_matches_the_model(
    input: Input,
    fixtures: &[Value],
    splices: &[Value],
) -> Result<(), TestCaseError> {
    let bytes = bytes_of(&input, fixtures, splices);
    let keys = vec!["user_id".to_string(), "djstripe_subscriber".to_string()];
    let got = parse(&bytes, &keys);
    let expected = model(&bytes);
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
    match (&got, &expected) {
        (Err(EventError::NotJson(_)), Expected::NotJson)
        | (Err(EventError::NotAnEvent(_)), Expected::NotAnEvent) => {}
        (
            Ok(event),
            Expected::Event {
                id,
                event_type,
                created,
                livemode,
                family: expected_family,
            },
        ) => {
            prop_assert_eq!(&event.id, id);
            prop_assert_eq!(&event.event_type, event_type);
            prop_assert_eq!(event.created, *created);
            prop_assert_eq!(event.livemode, *livemode);
            prop_assert_eq!(family(&event.kind), *expected_family, "{}", shown);
        }
        _ => prop_assert!(
            false,
            "parse gave {got:?}, the model {expected:?}, for {shown}"
        ),
    }
    // The same JSON, however it is laid out, reads the same.
    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        let compact = serde_json::to_vec(&value).expect("a Value serializes");
        prop_assert_eq!(parse(&compact, &keys), got);
    }
    Ok(())
}

fn run(cases: u32) {
    let (fixtures, splices) = (fixtures(), splices());
    check(cases, input(), |input| {
        parse_matches_the_model(input, &fixtures, &splices)
    });
}

#[test]
fn event_props_parse_matches_the_model() {
    run(FAST_CASES);
}

#[test]
#[ignore = "long mode: PAYGATE_PROPTEST_CASES cases (default 100,000)"]
fn event_props_parse_matches_the_model_long() {
    run(super::testing::long_cases());
}

/// The model against the fixtures as they are, so it cannot pass vacuously: every
/// fixture is an event of the family its type names.
#[test]
fn event_props_every_fixture_parses_as_its_type() {
    let keys = vec!["user_id".to_string()];
    for fixture in fixtures() {
        let bytes = serde_json::to_vec(&fixture).unwrap();
        let expected = model(&bytes);
        let event = parse(&bytes, &keys).unwrap_or_else(|e| panic!("{e}: {fixture}"));
        let Expected::Event { family: f, .. } = expected else {
            panic!("the model refuses a fixture: {fixture}");
        };
        assert_eq!(family(&event.kind), f, "{}", event.event_type);
    }
}
