//! HTTP requests → core requests, and their answers → JSON responses (the API of
//! docs/runtime.md). Every error is `{"error": {"code", "message"}}` with a fitting status.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request as HttpRequest, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::core::{Operation, Refusal};
use crate::metrics::Metrics;
use crate::server::{Fate, Message, Query, Request};

#[derive(Clone)]
pub struct AppState {
    pub requests: mpsc::Sender<Request>,
    pub token: Option<String>,
    pub metrics: Arc<Metrics>,
    pub max_body: usize,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/track", post(track))
        .route("/v1/identify", post(identify))
        .route("/v1/batch", post(batch))
        .route("/v1/journeys", put(deploy).get(journeys))
        .route("/v1/journeys/{name}/stats", get(stats))
        .route("/v1/journeys/{name}/{operation}", post(operate))
        .route("/v1/users/{id}", get(user))
        .route("/v1/clock", post(clock))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::map_response(json_errors))
        .layer(middleware::map_response_with_state(
            state.clone(),
            count_errors,
        ))
        .layer(DefaultBodyLimit::max(state.max_body))
        .with_state(state)
}

/// An error answer.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

fn refusal(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, refusal.code, refusal.message)
}

async fn authenticate(State(state): State<AppState>, request: HttpRequest, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs `Authorization: Bearer <token>` with the service's token",
            );
        }
    }
    next.run(request).await
}

/// axum's own refusals (a body over the limit, a wrong method) are plain text: the same
/// JSON shape as ours, with their words.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::METHOD_NOT_ALLOWED => "bad-method",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "bad-media-type",
        _ => "bad-request",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    error(status, code, message)
}

async fn count_errors(State(state): State<AppState>, response: Response) -> Response {
    if response.status().is_client_error() || response.status().is_server_error() {
        state.metrics.http_errors.fetch_add(1, Relaxed);
    }
    response
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no-route",
        "no such endpoint (see docs/runtime.md)",
    )
}

/// Sends a request to the core and waits for its answer.
async fn ask<T>(
    state: &AppState,
    request: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, Response> {
    let (reply, answer) = oneshot::channel();
    let stopping = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the service is stopping",
        )
    };
    state
        .requests
        .send(request(reply))
        .await
        .map_err(|_| stopping())?;
    answer.await.map_err(|_| stopping())
}

/// Parses a JSON body.
fn parse_body(body: &Bytes) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(body)
}

/// A body that is not JSON, in the parser's own words.
fn bad_json(e: serde_json::Error) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "bad-json",
        format!("the body is not JSON: {e}"),
    )
}

/// One message of `kind` (its `type` may be left out).
async fn single(state: AppState, body: Bytes, kind: &str) -> Response {
    let mut message = match parse_body(&body) {
        Ok(message) => message,
        Err(e) => return bad_json(e),
    };
    match message.as_object_mut() {
        Some(object) => {
            let given = object.entry("type").or_insert_with(|| json!(kind));
            if given != kind {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-type",
                    format!("this endpoint takes `\"type\": \"{kind}\"` messages, not {given}"),
                );
            }
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad-message",
                "a message must be a JSON object",
            )
        }
    }
    let fates = match ask(&state, |reply| Request::Messages {
        messages: vec![Message {
            text: message.to_string(),
        }],
        reply,
    })
    .await
    {
        Ok(fates) => fates,
        Err(response) => return response,
    };
    match fates.into_iter().next() {
        Some(Ok(Fate::Applied)) => Json(json!({ "accepted": true })).into_response(),
        Some(Ok(Fate::Ignored)) => Json(json!({
            "accepted": true,
            "ignored": "no deployed schema declares this event",
        }))
        .into_response(),
        Some(Err(r)) => refusal(r),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no answer"),
    }
}

async fn track(State(state): State<AppState>, body: Bytes) -> Response {
    single(state, body, "track").await
}

async fn identify(State(state): State<AppState>, body: Bytes) -> Response {
    single(state, body, "identify").await
}

/// `{"batch": [message, …]}`: each message accepted or refused on its own.
async fn batch(State(state): State<AppState>, body: Bytes) -> Response {
    // The messages' own text is kept to be logged as it came.
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Vec<&'a serde_json::value::RawValue>,
    }
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(e) if e.is_syntax() || e.is_eof() => return bad_json(e),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad-batch",
                "a batch is `{\"batch\": [message, …]}`",
            )
        }
    };
    let messages = batch
        .batch
        .iter()
        .map(|raw| Message {
            text: raw.get().to_string(),
        })
        .collect();
    let fates = match ask(&state, |reply| Request::Messages { messages, reply }).await {
        Ok(fates) => fates,
        Err(response) => return response,
    };
    if let Some(Err(r)) = fates
        .iter()
        .find(|f| matches!(f, Err(r) if r.status == 503))
    {
        return refusal(r.clone());
    }
    let (mut accepted, mut ignored, mut refused) = (0, 0, Vec::new());
    for (index, fate) in fates.into_iter().enumerate() {
        match fate {
            Ok(Fate::Applied) => accepted += 1,
            Ok(Fate::Ignored) => ignored += 1,
            Err(r) => refused.push(json!({ "index": index, "code": r.code, "message": r.message })),
        }
    }
    Json(json!({ "accepted": accepted, "ignored": ignored, "refused": refused })).into_response()
}

async fn deploy(State(state): State<AppState>, body: Bytes) -> Response {
    answered(
        ask(&state, |reply| Request::Deploy {
            bytes: body.to_vec(),
            reply,
        })
        .await,
    )
}

/// The core's answer to a request, as a response.
fn answered(answer: Result<Result<Value, Refusal>, Response>) -> Response {
    match answer {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(r)) => refusal(r),
        Err(response) => response,
    }
}

async fn read(state: &AppState, query: Query) -> Response {
    answered(ask(state, |reply| Request::Read { query, reply }).await)
}

async fn journeys(State(state): State<AppState>) -> Response {
    read(&state, Query::Journeys).await
}

async fn stats(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    read(&state, Query::Stats(name)).await
}

async fn user(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    read(&state, Query::User(id)).await
}

async fn operate(
    State(state): State<AppState>,
    Path((name, operation)): Path<(String, String)>,
) -> Response {
    let Some(operation) = Operation::parse(&operation) else {
        return error(
            StatusCode::NOT_FOUND,
            "no-route",
            format!("no operation `{operation}`: activate, pause, resume or archive"),
        );
    };
    answered(
        ask(&state, |reply| Request::Operate {
            journey: name,
            operation,
            reply,
        })
        .await,
    )
}

/// `{"until": "<RFC 3339>"}`: moves event time forward, firing what comes due.
async fn clock(State(state): State<AppState>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(e) => return bad_json(e),
    };
    let Some(until) = body
        .get("until")
        .and_then(Value::as_str)
        .and_then(journey_runtime::vm::input::parse_time)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad-clock",
            "the body is `{\"until\": \"<RFC 3339 time>\"}`",
        );
    };
    answered(ask(&state, |reply| Request::Advance { until, reply }).await)
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.requests.is_closed() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the service is stopping",
        );
    }
    let store = match state
        .metrics
        .store_checked
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        true => "checked",
        false => "checking",
    };
    Json(json!({ "status": "ok", "store": store })).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
