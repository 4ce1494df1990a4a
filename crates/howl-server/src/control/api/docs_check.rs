//! docs/api.md names the routes the API serves, no more and no fewer: a route added without
//! its line, or a line left behind after a route went, fails here.

use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Every `METHOD /path` docs/api.md names. A route is written `` `GET /x` ``, or with several
/// methods `` `GET`/`POST /x` ``: a lone method span carries over to the next path span.
fn documented(doc: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut pending: Vec<&str> = Vec::new();
    // Odd-numbered pieces are the insides of backtick spans.
    for (i, span) in doc.split('`').enumerate() {
        if i % 2 == 0 {
            // Text between spans: only a `/` keeps a method list going.
            if span != "/" {
                pending.clear();
            }
            continue;
        }
        if METHODS.contains(&span) {
            pending.push(span);
            continue;
        }
        match span.split_once(' ') {
            Some((m, path)) if METHODS.contains(&m) && path.starts_with('/') => {
                for p in pending.drain(..).chain([m]) {
                    out.insert(format!("{p} {path}"));
                }
            }
            _ => pending.clear(),
        }
    }
    out
}

/// Every `METHOD /path` the OpenAPI document (built from the router's own route list) has.
fn served() -> BTreeSet<String> {
    let doc = super::openapi();
    let mut out = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (m, present) in ops {
            if present {
                out.insert(format!("{m} {path}"));
            }
        }
    }
    out
}

#[test]
fn docs_api_md_lists_exactly_the_routes_served() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"))
        .expect("docs/api.md");
    let documented = documented(&doc);
    // The unauthenticated routes are described in prose by path (`/healthz`, `/readyz`, the
    // web UI's `/` and `/ui/...` files), not as `METHOD /path`.
    let served: BTreeSet<String> = served()
        .into_iter()
        .filter(|r| !(r == "GET /" || r.starts_with("GET /ui")))
        .filter(|r| r != "GET /healthz" && r != "GET /readyz")
        .collect();
    for prose in ["`/healthz`", "`/readyz`", "`/ui/...`"] {
        assert!(
            doc.contains(prose),
            "docs/api.md no longer mentions {prose}"
        );
    }
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/api.md vs the router: served but not documented {missing:?}; documented but \
         not served {stale:?}"
    );
}

#[test]
fn the_route_parser_reads_method_lists() {
    let d = documented("| `GET`/`POST /a`, `DELETE /a/{id}` | x `GET` alone, `/b` path |");
    let want: BTreeSet<String> = ["GET /a", "POST /a", "DELETE /a/{id}"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(d, want);
}
