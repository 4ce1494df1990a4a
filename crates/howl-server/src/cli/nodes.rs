//! `howl nodes`: the machines that run producers, with their capacity and use (today the
//! built-in local node).

use crate::cli::NodesArgs;
use crate::cli::api::Api;
use crate::cli::format::{emit_json, emit_table};
use crate::cli::table::{Align, Table, sanitize};
use crate::control::api::NodeView;

pub async fn nodes(args: NodesArgs) -> Result<(), String> {
    let api = Api::open(&args.list.client)?;
    let list: Vec<NodeView> = api.get("/api/v1/nodes").await?;
    if args.list.json {
        return emit_json(&list);
    }
    emit_table(&nodes_table(&list), "no nodes")
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
        ("ENCODERS", Align::Left),
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
            sanitize(&n.encoders.join(",")),
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
            ["local", "ready", "2/2", "2/-", "2", "4", "h264,hevc"],
            "{out}"
        );
    }
}
