//! The operator web UI (and the `/watch/<lobby>` page of browser viewers): static files
//! compiled into the binary and served by the API
//! listener. They hold no data, so they need no token; every number on the page comes from the
//! token-protected JSON API, called by the page itself with the token the operator typed.
//!
//! A strict Content-Security-Policy goes with every file: the page runs only its own script,
//! talks only to its own origin and cannot be framed, so a name or app title that slipped past
//! the page's escaping still could not run code or leak the token elsewhere.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../ui/style.css");
const WATCH_HTML: &str = include_str!("../../ui/watch.html");
const WATCH_JS: &str = include_str!("../../ui/watch.js");
const WATCH_CSS: &str = include_str!("../../ui/watch.css");

/// Only same-origin script, style and fetches; no inline script, no plugins, no framing.
/// `img-src data:` lets the page use an empty inline favicon instead of a request that 404s.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The routes of the UI, generic over the state so they merge into any router; registered
/// with their OpenAPI descriptions like every other route.
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(ui_bare))
        .routes(routes!(index))
        .routes(routes!(app_js))
        .routes(routes!(style_css))
        .routes(routes!(watch))
        .routes(routes!(play_page))
        .routes(routes!(watch_js))
        .routes(routes!(watch_css))
}

/// Redirects to the web UI.
#[utoipa::path(get, path = "/", tag = "web ui", security(()), responses((status = 303)))]
async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// Redirects to the web UI.
#[utoipa::path(get, path = "/ui", tag = "web ui", security(()), responses((status = 303)))]
async fn ui_bare() -> Redirect {
    Redirect::to("/ui/")
}

/// The web UI page (static; it signs in with a token and calls the API).
#[utoipa::path(get, path = "/ui/", tag = "web ui", security(()),
    responses((status = 200, content_type = "text/html", body = String)))]
async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// The web UI's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "web ui", security(()),
    responses((status = 200, content_type = "text/javascript", body = String)))]
async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// The web UI's style sheet.
#[utoipa::path(get, path = "/ui/style.css", tag = "web ui", security(()),
    responses((status = 200, content_type = "text/css", body = String)))]
async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// A lobby in the browser over WebRTC (static; it signs in with a token and POSTs its offer
/// to the lobby's WHEP endpoint). `lobby` is a lobby id or name.
#[utoipa::path(get, path = "/watch/{lobby}", tag = "web ui", security(()),
    params(("lobby" = String, Path)),
    responses((status = 200, content_type = "text/html", body = String)))]
async fn watch() -> Response {
    asset("text/html; charset=utf-8", WATCH_HTML)
}

/// An app in the browser: the caller's own instance of it (started or resumed by
/// `POST /api/v1/apps/{id}/whep`), on the same page as `/watch`. `app` is an app id or title.
#[utoipa::path(get, path = "/play/{app}", tag = "web ui", security(()),
    params(("app" = String, Path)),
    responses((status = 200, content_type = "text/html", body = String)))]
async fn play_page() -> Response {
    asset("text/html; charset=utf-8", WATCH_HTML)
}

/// The watch page's script.
#[utoipa::path(get, path = "/ui/watch.js", tag = "web ui", security(()),
    responses((status = 200, content_type = "text/javascript", body = String)))]
async fn watch_js() -> Response {
    asset("text/javascript; charset=utf-8", WATCH_JS)
}

/// The watch page's style sheet.
#[utoipa::path(get, path = "/ui/watch.css", tag = "web ui", security(()),
    responses((status = 200, content_type = "text/css", body = String)))]
async fn watch_css() -> Response {
    asset("text/css; charset=utf-8", WATCH_CSS)
}

/// One static file with the headers every UI file carries. `no-cache` (revalidate, not "never
/// store") so an upgraded server's page is picked up on the next load.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_path(path: &str) -> Response {
        let (router, _) = routes::<()>().split_for_parts();
        router
            .oneshot(
                Request::get(path)
                    .body(Body::empty())
                    .expect("request builds"),
            )
            .await
            .expect("router is infallible")
    }

    fn header_of(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    async fn body_of(resp: Response) -> String {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("body reads")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8 body")
    }

    #[tokio::test]
    async fn root_redirects_to_ui() {
        for path in ["/", "/ui"] {
            let resp = get_path(path).await;
            assert!(resp.status().is_redirection(), "{path}: {}", resp.status());
            assert_eq!(header_of(&resp, header::LOCATION), "/ui/");
        }
    }

    #[tokio::test]
    async fn files_have_types_cache_and_csp() {
        for (path, ty, marker) in [
            ("/ui/", "text/html", "<!doctype html>"),
            ("/ui/app.js", "text/javascript", "use strict"),
            ("/ui/style.css", "text/css", "--accent"),
            ("/watch/7", "text/html", "watch.js"),
            ("/play/Desktop", "text/html", "watch.js"),
            ("/ui/watch.js", "text/javascript", "use strict"),
            ("/ui/watch.css", "text/css", "#video"),
        ] {
            let resp = get_path(path).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert!(
                header_of(&resp, header::CONTENT_TYPE).starts_with(ty),
                "{path}"
            );
            assert_eq!(header_of(&resp, header::CACHE_CONTROL), "no-cache");
            let csp = header_of(&resp, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
            assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
            assert_eq!(header_of(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let body = body_of(resp).await;
            assert!(
                body.to_lowercase().contains(&marker.to_lowercase()),
                "{path}"
            );
        }
    }

    /// The CSP forbids inline script, so the page must not carry any, and must fetch nothing
    /// from another origin (the UI works on a machine with no internet).
    #[test]
    fn page_has_no_inline_script_and_no_external_urls() {
        for page in [INDEX_HTML, WATCH_HTML] {
            page_has_no_inline_script(page);
        }
        for file in [
            INDEX_HTML, APP_JS, STYLE_CSS, WATCH_HTML, WATCH_JS, WATCH_CSS,
        ] {
            assert!(!file.contains("http://"), "no absolute URLs");
            assert!(!file.contains("https://"), "no absolute URLs");
        }
        // Data is put into the page as text only.
        for js in [APP_JS, WATCH_JS] {
            assert!(!js.contains("innerHTML"), "no innerHTML in the scripts");
        }
    }

    fn page_has_no_inline_script(html: &str) {
        let lower = html.to_lowercase();
        for tag in lower.match_indices("<script").map(|(i, _)| &lower[i..]) {
            let open = &tag[..tag.find('>').expect("script tag closes")];
            assert!(open.contains("src="), "inline script: {open}");
            assert!(
                tag[open.len() + 1..].starts_with("</script>"),
                "script with body"
            );
        }
        assert!(!has_inline_handler(&lower), "no inline event handlers");
    }

    /// Finds ` on<letters>=` as in `onclick="..."`, which the CSP would block anyway.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].trim_start().starts_with('=')
        })
    }

    #[tokio::test]
    async fn other_paths_are_not_served_here() {
        let resp = get_path("/ui/secret.txt").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
