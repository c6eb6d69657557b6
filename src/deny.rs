//! Every answer the gateway gives in place of the upstream, as one
//! enum turned into an HTTP response in exactly one place.
//!
//! Nothing here decides *whether* to deny; callers decide and hand over a
//! [`Deny`]. Keeping the mapping in one function keeps status codes, error codes
//! and headers consistent across the proxy, the webhook endpoint and `/me`.
//! A gRPC caller gets the same refusal in gRPC's terms ([`is_grpc`]): HTTP 200
//! with `grpc-status` and `grpc-message`, since gRPC clients do not read HTTP
//! statuses or JSON bodies.

use bytes::Bytes;
use http::header::HeaderName;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use serde_json::json;

use crate::auth::AuthError;
use crate::config::AccessConfig;
use crate::entitlement::Refusal;
use crate::metrics::Decision;

/// Why the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Deny {
    #[error("no bearer token")]
    Unauthenticated,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("token expired")]
    TokenExpired,
    #[error("checkout required")]
    CheckoutRequired,
    #[error("subscription required (status {status})")]
    SubscriptionRequired { status: &'static str },
    #[error("upgrade required (feature {feature})")]
    UpgradeRequired { feature: String },
    #[error("bad path: {0}")]
    BadPath(String),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("entitlement store unavailable")]
    EntitlementUnavailable,
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    #[error("upstream timeout")]
    UpstreamTimeout,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad webhook signature: {0}")]
    BadSignature(String),
    #[error("bad webhook payload: {0}")]
    BadPayload(String),
    #[error("store unavailable for a webhook")]
    StoreUnavailable,
    #[error("Stripe API unavailable for a webhook")]
    StripeUnavailable,
    /// The client's framing was broken (bad chunk size, body shorter than its
    /// `Content-Length`, connection closed mid-body) or a header was refused.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request body stalled past `server.body_timeout` or a webhook body
    /// took longer than `stripe.body_timeout`.
    #[error("request timeout")]
    RequestTimeout,
    /// Too many webhook bodies being read at once (`stripe.max_concurrent`).
    #[error("overloaded")]
    Overloaded,
}

/// A token that did not pass, as the 401 it gets.
impl From<AuthError> for Deny {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => Deny::Unauthenticated,
            AuthError::Expired => Deny::TokenExpired,
            AuthError::Invalid { reason, .. } => Deny::InvalidToken(reason.as_str()),
        }
    }
}

/// A subscription route's refusal, as the 402 it gets.
impl From<Refusal<'_>> for Deny {
    fn from(refusal: Refusal<'_>) -> Self {
        match refusal {
            Refusal::CheckoutRequired => Deny::CheckoutRequired,
            Refusal::SubscriptionRequired { status } => Deny::SubscriptionRequired { status },
            Refusal::UpgradeRequired { feature } => Deny::UpgradeRequired {
                feature: feature.to_string(),
            },
        }
    }
}

impl Deny {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Deny::Unauthenticated | Deny::InvalidToken(_) | Deny::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Deny::CheckoutRequired
            | Deny::SubscriptionRequired { .. }
            | Deny::UpgradeRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            Deny::BadPath(_)
            | Deny::BadSignature(_)
            | Deny::BadPayload(_)
            | Deny::BadRequest(_) => StatusCode::BAD_REQUEST,
            Deny::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Deny::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Deny::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Deny::EntitlementUnavailable | Deny::StoreUnavailable | Deny::StripeUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Deny::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Deny::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Deny::NotFound => StatusCode::NOT_FOUND,
            Deny::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The machine-readable `code` clients switch on.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Deny::Unauthenticated => "UNAUTHENTICATED",
            Deny::InvalidToken(_) => "INVALID_TOKEN",
            Deny::TokenExpired => "TOKEN_EXPIRED",
            Deny::CheckoutRequired => "CHECKOUT_REQUIRED",
            Deny::SubscriptionRequired { .. } => "SUBSCRIPTION_REQUIRED",
            Deny::UpgradeRequired { .. } => "UPGRADE_REQUIRED",
            Deny::BadPath(_) => "BAD_PATH",
            Deny::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Deny::EntitlementUnavailable => "ENTITLEMENT_UNAVAILABLE",
            Deny::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Deny::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            Deny::NotFound => "NOT_FOUND",
            Deny::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Deny::BadSignature(_) => "BAD_SIGNATURE",
            Deny::BadPayload(_) => "BAD_PAYLOAD",
            Deny::StoreUnavailable => "STORE_UNAVAILABLE",
            Deny::StripeUnavailable => "STRIPE_UNAVAILABLE",
            Deny::BadRequest(_) => "BAD_REQUEST",
            Deny::RequestTimeout => "REQUEST_TIMEOUT",
            Deny::Overloaded => "OVERLOADED",
        }
    }

    /// Short label for the access log and metrics (`decision` field).
    pub(crate) fn decision(&self) -> Decision {
        match self {
            Deny::CheckoutRequired => Decision::CheckoutRequired,
            Deny::SubscriptionRequired { .. } => Decision::SubscriptionRequired,
            Deny::UpgradeRequired { .. } => Decision::UpgradeRequired,
            Deny::Unauthenticated | Deny::InvalidToken(_) | Deny::TokenExpired => {
                Decision::Unauthenticated
            }
            Deny::BadPath(_) => Decision::BadPath,
            Deny::PayloadTooLarge => Decision::TooLarge,
            Deny::EntitlementUnavailable => Decision::StoreUnavailable,
            Deny::UpstreamUnavailable | Deny::UpstreamTimeout => Decision::UpstreamError,
            Deny::NotFound | Deny::MethodNotAllowed => Decision::NotFound,
            Deny::BadSignature(_)
            | Deny::BadPayload(_)
            | Deny::StoreUnavailable
            | Deny::StripeUnavailable
            | Deny::Overloaded => Decision::WebhookRejected,
            Deny::BadRequest(_) => Decision::BadRequest,
            Deny::RequestTimeout => Decision::RequestTimeout,
        }
    }

    /// The sentence in the `error` field. The 402 sentences are the ones the
    /// subscription middleware paygate replaces used, so existing front ends keep working.
    fn sentence(&self) -> &'static str {
        match self {
            Deny::Unauthenticated => "Authentication required.",
            Deny::InvalidToken(_) => "The access token is invalid.",
            Deny::TokenExpired => "The access token has expired.",
            Deny::CheckoutRequired => "Subscription required. Please complete checkout.",
            Deny::SubscriptionRequired { .. } => "Active subscription required",
            Deny::UpgradeRequired { .. } => "Your plan does not include this feature.",
            Deny::BadPath(_) => "The request path is not acceptable.",
            Deny::PayloadTooLarge => "The request body is too large.",
            Deny::EntitlementUnavailable => {
                "Subscription status is temporarily unavailable. Please retry."
            }
            Deny::UpstreamUnavailable => "The application is unavailable.",
            Deny::UpstreamTimeout => "The application did not answer in time.",
            Deny::NotFound => "Not found.",
            Deny::MethodNotAllowed => "Method not allowed.",
            Deny::BadSignature(_) => "The Stripe-Signature header does not verify.",
            Deny::BadPayload(_) => "The body is not a Stripe event.",
            Deny::StoreUnavailable => "The entitlement store is unavailable; retry later.",
            Deny::StripeUnavailable => "The Stripe API could not be read; retry later.",
            Deny::BadRequest(_) => "The request is malformed.",
            Deny::RequestTimeout => "The request body did not arrive in time.",
            Deny::Overloaded => "Too many requests are being received; retry later.",
        }
    }

    /// Builds the JSON response. `access` supplies the redirect targets.
    pub(crate) fn into_response(self, access: &AccessConfig) -> Response<Full<Bytes>> {
        let mut body = json!({ "error": self.sentence(), "code": self.code() });
        match &self {
            Deny::CheckoutRequired => body["redirect"] = json!(access.checkout_redirect),
            Deny::SubscriptionRequired { status } => {
                body["redirect"] = json!(access.expired_redirect);
                body["status"] = json!(status);
            }
            Deny::UpgradeRequired { feature } => body["feature"] = json!(feature),
            _ => {}
        }
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            Deny::Unauthenticated => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Deny::InvalidToken(_) | Deny::TokenExpired => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Deny::EntitlementUnavailable
            | Deny::StoreUnavailable
            | Deny::StripeUnavailable
            | Deny::Overloaded => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// True for a gRPC call: HTTP/2 (gRPC needs it, so an HTTP/1.1 request costs one
/// comparison) with a `content-type` of `application/grpc` or a subtype
/// (`application/grpc+proto`, `application/grpc+json`).
pub(crate) fn is_grpc<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_2
        && request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|value| is_grpc_content_type(value.as_bytes()))
}

fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

impl Deny {
    /// The refusal as the caller can read it: gRPC's trailers-only answer for a
    /// gRPC call, the JSON one otherwise.
    pub(crate) fn into_response_for(
        self,
        access: &AccessConfig,
        grpc: bool,
    ) -> Response<Full<Bytes>> {
        if grpc {
            self.into_grpc_response()
        } else {
            self.into_response(access)
        }
    }

    /// The gRPC status code for this refusal, from its HTTP status: 401 is
    /// `UNAUTHENTICATED` (16); 402 and 403 `PERMISSION_DENIED` (7); 400
    /// `INVALID_ARGUMENT` (3); 404 and 405 `UNIMPLEMENTED` (12); 408 and 504
    /// `DEADLINE_EXCEEDED` (4); 413 and 429 `RESOURCE_EXHAUSTED` (8); other 5xx
    /// `UNAVAILABLE` (14); anything else `UNKNOWN` (2).
    pub(crate) fn grpc_status(&self) -> u8 {
        match self.status().as_u16() {
            401 => 16,
            402 | 403 => 7,
            400 => 3,
            404 | 405 => 12,
            408 | 504 => 4,
            413 | 429 => 8,
            500..=599 => 14,
            _ => 2,
        }
    }

    /// A trailers-only gRPC answer: HTTP 200, `content-type: application/grpc`,
    /// `grpc-status` and the refusal's code as `grpc-message`, no body.
    pub(crate) fn into_grpc_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            GRPC_STATUS.clone(),
            HeaderValue::from(u16::from(self.grpc_status())),
        );
        // The code is upper-case ASCII and `_`: nothing gRPC's percent-encoding changes.
        headers.insert(GRPC_MESSAGE.clone(), HeaderValue::from_static(self.code()));
        if matches!(self.status().as_u16(), 503) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A JSON response with the given status; used for the gateway's own endpoints too.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn access() -> AccessConfig {
        AccessConfig {
            rules: Default::default(),
            default: crate::routes::Policy::Subscription,
            checkout_redirect: "/checkout".into(),
            expired_redirect: "/subscription/expired".into(),
            case_insensitive_paths: false,
        }
    }

    async fn body(deny: Deny) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let r = deny.into_response(&access());
        let (parts, body) = r.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn payment_required_bodies_match_the_spec() {
        let (status, headers, json) = body(Deny::CheckoutRequired).await;
        assert_eq!(status, 402);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(
            json,
            json!({"error": "Subscription required. Please complete checkout.", "code": "CHECKOUT_REQUIRED", "redirect": "/checkout"})
        );
        let (_, _, json) = body(Deny::SubscriptionRequired { status: "canceled" }).await;
        assert_eq!(
            json,
            json!({"error": "Active subscription required", "code": "SUBSCRIPTION_REQUIRED", "redirect": "/subscription/expired", "status": "canceled"})
        );
        let (_, _, json) = body(Deny::UpgradeRequired {
            feature: "export".into(),
        })
        .await;
        assert_eq!(json["code"], "UPGRADE_REQUIRED");
        assert_eq!(json["feature"], "export");
    }

    #[tokio::test]
    async fn unauthorized_carries_www_authenticate() {
        let (status, headers, json) = body(Deny::Unauthenticated).await;
        assert_eq!(
            (status.as_u16(), json["code"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
        assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
        for deny in [Deny::InvalidToken("bad signature"), Deny::TokenExpired] {
            let (status, headers, _) = body(deny).await;
            assert_eq!(status, 401);
            assert_eq!(headers[WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
        }
        let (_, headers, _) = body(Deny::EntitlementUnavailable).await;
        assert!(headers.contains_key(RETRY_AFTER));
    }

    #[test]
    fn grpc_calls_get_grpc_status_and_the_code() {
        let r = Deny::CheckoutRequired.into_response_for(&access(), true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "CHECKOUT_REQUIRED");
        let r = Deny::Unauthenticated.into_response_for(&access(), true);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["grpc-message"], "UNAUTHENTICATED");
        for (deny, code) in [
            (Deny::BadPath("x".into()), 3),
            (Deny::PayloadTooLarge, 8),
            (Deny::NotFound, 12),
            (Deny::UpstreamUnavailable, 14),
            (Deny::UpstreamTimeout, 4),
            (Deny::EntitlementUnavailable, 14),
        ] {
            assert_eq!(deny.grpc_status(), code, "{deny:?}");
        }
        let json = Deny::CheckoutRequired.into_response_for(&access(), false);
        assert_eq!(json.status(), 402);
    }

    #[test]
    fn only_http2_with_a_grpc_content_type_is_grpc() {
        let request = |version, content_type: &str| {
            Request::builder()
                .version(version)
                .header(CONTENT_TYPE, content_type)
                .body(())
                .unwrap()
        };
        assert!(is_grpc(&request(Version::HTTP_2, "application/grpc")));
        assert!(is_grpc(&request(Version::HTTP_2, "application/grpc+proto")));
        assert!(is_grpc(&request(Version::HTTP_2, "Application/GRPC")));
        assert!(!is_grpc(&request(Version::HTTP_11, "application/grpc")));
        assert!(!is_grpc(&request(Version::HTTP_2, "application/grpc-web")));
        assert!(!is_grpc(&request(Version::HTTP_2, "application/json")));
        assert!(!is_grpc(
            &Request::builder()
                .version(Version::HTTP_2)
                .body(())
                .unwrap()
        ));
    }
}
