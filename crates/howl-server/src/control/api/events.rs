//! `/api/v1/events`: the event bus as Server-Sent Events, filtered by who is asking.

use super::ApiState;
use crate::domain::auth::Principal;
use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use std::time::Duration;

/// How long one `/api/v1/events` stream lasts before the server ends it (clients reconnect
/// and refetch). Bounds every API connection's life, SSE included.
pub const EVENT_STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// Comment lines on an idle event stream, so proxies and clients see it is alive.
const EVENT_KEEPALIVE: Duration = Duration::from_secs(15);

/// Live events as Server-Sent Events (`event: <type>`, `data: <json>`); see the README.
/// A tenant receives only events about what it owns.
#[utoipa::path(get, path = "/api/v1/events",
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> impl IntoResponse {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let rx = st.events.subscribe();
    let hello = SseEvent::default()
        .event("hello")
        .data(serde_json::json!({"type": "hello", "caller": p.label()}).to_string());
    let deadline = tokio::time::Instant::now() + EVENT_STREAM_LIFETIME;
    let shutdown = st.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (Some(hello), rx, p, shutdown),
        move |(first, mut rx, p, shutdown)| async move {
            if let Some(h) = first {
                return Some((
                    Ok::<_, std::convert::Infallible>(h),
                    (None, rx, p, shutdown),
                ));
            }
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep_until(deadline) => return None,
                };
                match next {
                    Ok(env) => {
                        let visible = match env.audience {
                            crate::domain::events::Audience::AdminOnly => p.is_admin(),
                            crate::domain::events::Audience::Tenant(t) => p.may_access(Some(t)),
                        };
                        if !visible {
                            continue;
                        }
                        let Ok(json) = serde_json::to_string(&*env) else {
                            continue;
                        };
                        let ev = SseEvent::default()
                            .event(env.event.kind())
                            .id(env.seq.to_string())
                            .data(json);
                        return Some((Ok(ev), (None, rx, p, shutdown)));
                    }
                    Err(RecvError::Lagged(n)) => {
                        let ev = SseEvent::default()
                            .event("lagged")
                            .data(serde_json::json!({"type": "lagged", "missed": n}).to_string());
                        return Some((Ok(ev), (None, rx, p, shutdown)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(EVENT_KEEPALIVE)
            .text("keep-alive"),
    )
}
