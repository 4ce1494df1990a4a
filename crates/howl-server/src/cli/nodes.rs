//! `howl nodes`: the machines that run producers, with their capacity and use (the built-in
//! local node and media nodes that joined); join tokens, drain and remove.

use crate::cli::api::Api;
use crate::cli::format::{emit_json, emit_table};
use crate::cli::table::{Align, Table, sanitize};
use crate::cli::{NodesAction, NodesArgs};
use crate::control::api::{NodeTokenView, NodeView};
use http::Method;

pub async fn nodes(args: NodesArgs) -> Result<(), String> {
    match args.action {
        Some(NodesAction::Token(t)) => {
            let api = Api::open(&t.conn)?;
            let body = serde_json::json!({ "ttl_secs": t.ttl, "reusable": t.reusable });
            let tok: NodeTokenView = api
                .send(Method::POST, "/api/v1/nodes/tokens", Some(body))
                .await?
                .ok_or("the server sent no token")?;
            if t.json {
                return emit_json(&tok);
            }
            // The token alone on stdout (`> join-token`); what it is, on stderr.
            println!("{}", tok.token);
            eprintln!(
                "join token {} ({}, expires at unix time {}): shown once, keep it secret",
                tok.id,
                if tok.reusable {
                    "reusable"
                } else {
                    "single-use"
                },
                tok.expires_unix
            );
            return Ok(());
        }
        Some(NodesAction::Drain(n)) => {
            let api = Api::open(&n.conn)?;
            let path = format!("/api/v1/nodes/{}/drain", urlencode(&n.node));
            api.send::<serde_json::Value>(Method::POST, &path, None)
                .await?;
            println!("node {} drains: no new producers go to it", n.node);
            return Ok(());
        }
        Some(NodesAction::Remove(n)) => {
            let api = Api::open(&n.conn)?;
            let path = format!("/api/v1/nodes/{}", urlencode(&n.node));
            api.send::<serde_json::Value>(Method::DELETE, &path, None)
                .await?;
            println!("node {} removed", n.node);
            return Ok(());
        }
        None => {}
    }
    let api = Api::open(&args.list.client)?;
    // Pinned nodes that are not connected too: the operator may want to remove them.
    let list: Vec<NodeView> = api.get("/api/v1/nodes?disconnected=true").await?;
    if args.list.json {
        return emit_json(&list);
    }
    emit_table(&nodes_table(&list), "no nodes")
}

/// Node names are [A-Za-z0-9._-]; anything else is percent-encoded so the path stays one
/// segment.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// "2/8", or "2/-" without a limit.
fn used_of(used: u32, max: u32) -> String {
    if max == 0 {
        format!("{used}/-")
    } else {
        format!("{used}/{max}")
    }
}

fn nodes_table(list: &[NodeView]) -> Table {
    let mut t = Table::new(&[
        ("NODE", Align::Left),
        ("STATE", Align::Left),
        ("PRODUCERS", Align::Right),
        ("ENCODER SESSIONS", Align::Right),
        ("WORKERS", Align::Right),
        ("CORES", Align::Right),
        ("GPUS", Align::Right),
        ("ENCODERS", Align::Left),
        ("LABELS", Align::Left),
    ]);
    for n in list {
        t.push(vec![
            sanitize(&n.name),
            sanitize(&n.state),
            used_of(n.producers, n.max_producers),
            used_of(n.encoder_sessions, n.max_encoder_sessions),
            n.workers.to_string(),
            if n.cores == 0 {
                "-".into()
            } else {
                n.cores.to_string()
            },
            n.gpus.to_string(),
            sanitize(&n.encoders.join(",")),
            if n.labels.is_empty() {
                "-".into()
            } else {
                sanitize(
                    &n.labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                )
            },
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_use_against_each_limit() {
        let node = NodeView {
            name: "local".into(),
            state: "ready".into(),
            producers: 2,
            max_producers: 2,
            encoder_sessions: 2,
            max_encoder_sessions: 0,
            workers: 2,
            encoders: vec!["h264".into(), "hevc".into()],
            cores: 4,
            gpus: 0,
            labels: Default::default(),
            address: None,
        };
        let out = nodes_table(&[node]).render();
        let mut lines = out.lines();
        let head = lines.next().unwrap_or_default();
        assert!(
            head.starts_with("NODE") && head.contains("ENCODER SESSIONS"),
            "{out}"
        );
        let row = lines.find(|l| l.starts_with("local")).unwrap_or_default();
        let row: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            row,
            [
                "local",
                "ready",
                "2/2",
                "2/-",
                "2",
                "4",
                "0",
                "h264,hevc",
                "-"
            ],
            "{out}"
        );
    }
}
