//! Placement: which media node runs a new producer (docs/nodes.md).
//!
//! Every producer runs on one node, chosen when it is admitted (a private launch holds its
//! slot from `/launch`, before its worker starts). The built-in node [`LOCAL_NODE`] (this
//! machine, limited by [`Settings::admission`](super::Settings)) is there from the start; media
//! nodes that dial in are inputs ([`Domain::node_joined`], [`Domain::node_lost`]). A node takes
//! a producer when it is not draining, offers what the app requires (its
//! [`NodeRequirements`]: labels, a GPU) and has a free producer slot and encoder session;
//! among those the [`Placement`] policy picks one. When none can, the request is refused
//! through the ordinary admission [`Refusal`], so every path shows the reason.

use super::*;
use crate::apps::NodeRequirements;

/// The name of the built-in node (this machine).
pub const LOCAL_NODE: &str = "local";

/// How a producer's node is chosen among those with room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The node with the fewest producers (load spread; the default).
    #[default]
    Spread,
    /// The node with the most producers that still has room (fill one node first, keep the
    /// others free or idle).
    Pack,
}

impl Placement {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "spread" => Some(Placement::Spread),
            "pack" => Some(Placement::Pack),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Placement::Spread => "spread",
            Placement::Pack => "pack",
        }
    }
}

/// What a node offers that an app may require: its operator labels and GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeTraits {
    /// `howl node --label KEY=VALUE`.
    pub labels: BTreeMap<String, String>,
    /// GPUs it found (render nodes, NVIDIA devices).
    pub gpus: u32,
}

/// One node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSlot {
    /// Its producer slots and encoder sessions (`None`: unlimited).
    pub limits: Admission,
    /// Its labels and GPUs, matched against an app's requirements.
    pub traits: NodeTraits,
    /// No new producer goes to it; the running ones run to their end.
    pub draining: bool,
    /// Which connection of the node this is (the driver's counter; 0 for the local node): a
    /// loss reported for an older connection after a newer one joined changes nothing.
    pub epoch: u64,
}

impl Domain {
    /// The nodes, by name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodeSlot)> + '_ {
        self.nodes.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Producers placed on `node` (each holds one producer slot and one encoder session).
    pub fn producers_on(&self, node: &str) -> u32 {
        let n = self.producers.values().filter(|p| p.node == node).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The placement policy in force.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Sets the placement policy (configuration key `placement`).
    pub fn set_placement(&mut self, placement: Placement) {
        self.placement = placement;
    }

    // ----- inputs: nodes -----

    /// A node joined (or rejoined, as connection `epoch`) with these limits and traits; it
    /// takes producers from now on.
    pub fn node_joined(
        &mut self,
        _now: Instant,
        name: &str,
        epoch: u64,
        limits: Admission,
        traits: NodeTraits,
    ) {
        self.nodes.insert(
            name.to_owned(),
            NodeSlot {
                limits,
                traits,
                draining: false,
                epoch,
            },
        );
    }

    /// Sets what the built-in local node offers (the driver finds its GPUs at start).
    pub fn set_local_traits(&mut self, traits: NodeTraits) {
        if let Some(local) = self.nodes.get_mut(LOCAL_NODE) {
            local.traits = traits;
        }
    }

    /// A node is gone (disconnected, missed its heartbeat deadline, removed, or the local
    /// node switched off): it takes no producer, and every producer on it stops with
    /// [`EndReason::NodeLost`] (its viewers are told). Returns how many stopped. A loss of
    /// connection `epoch` when a newer connection of the node has joined since is stale and
    /// changes nothing (the old connection's producers end through their workers).
    pub fn node_lost(&mut self, _now: Instant, name: &str, epoch: u64, detail: &str) -> usize {
        if self.nodes.get(name).is_some_and(|n| n.epoch > epoch) {
            return 0;
        }
        self.nodes.remove(name);
        let on: Vec<ProducerId> = self
            .producers
            .values()
            .filter(|p| p.node == name)
            .map(|p| p.id)
            .collect();
        for id in &on {
            // Its worker is stopped as usual: the driver's handle goes at once (the process
            // went with its node; a stop of a lost worker finishes without waiting on it).
            self.stop_producer(
                *id,
                EndReason::NodeLost {
                    node: name.to_owned(),
                    detail: detail.to_owned(),
                },
            );
        }
        on.len()
    }

    /// Stops placing producers on `node`; those running keep running. False: no such node.
    pub fn drain_node(&mut self, name: &str) -> bool {
        match self.nodes.get_mut(name) {
            Some(n) => {
                n.draining = true;
                true
            }
            None => false,
        }
    }

    /// Picks the node for one more producer of an app that `requires` these, `replacing`
    /// one that stops in the same input (its slot counts as free). Refusals are the
    /// admission refusals: a node that lacks a requirement is not counted as open, so with
    /// none that has them the refusal names what is missing rather than a limit.
    pub(super) fn place(
        &self,
        replacing: Option<ProducerId>,
        requires: &NodeRequirements,
    ) -> Result<String, Refusal> {
        let replaced_on = replacing
            .and_then(|r| self.producers.get(&r))
            .map(|p| p.node.as_str());
        let mut best: Option<(&str, u32)> = None;
        let mut full: Option<Refusal> = None;
        let mut open = 0usize;
        let mut unmet: Vec<String> = Vec::new();
        for (name, slot) in &self.nodes {
            if slot.draining {
                continue;
            }
            if let Some(missing) = requires.unmet(&slot.traits.labels, slot.traits.gpus) {
                if !unmet.contains(&missing) {
                    unmet.push(missing);
                }
                continue;
            }
            open += 1;
            let used = self
                .producers_on(name)
                .saturating_sub(u32::from(replaced_on == Some(name.as_str())));
            let checks = [
                (Limit::Producers, slot.limits.max_producers),
                (Limit::EncoderSessions, slot.limits.max_encoder_sessions),
            ];
            if let Some((limit, max)) = checks
                .into_iter()
                .find_map(|(l, m)| m.filter(|&m| used >= m).map(|m| (l, m)))
            {
                full.get_or_insert(Refusal::AtCapacity { limit, max });
                continue;
            }
            let better = match (best, self.placement) {
                (None, _) => true,
                (Some((_, b)), Placement::Spread) => used < b,
                (Some((_, b)), Placement::Pack) => used > b,
            };
            if better {
                best = Some((name, used));
            }
        }
        match best {
            Some((name, _)) => Ok(name.to_owned()),
            None if open == 0 && !unmet.is_empty() => Err(Refusal::Unsatisfied {
                unmet: unmet.join(" or "),
            }),
            None if open == 0 => Err(Refusal::NoNode),
            // One node: its own limit, as before nodes existed. Several: every node is full.
            None if open == 1 => Err(full.unwrap_or(Refusal::NoNode)),
            None => Err(Refusal::NodesFull {
                nodes: u32::try_from(open).unwrap_or(u32::MAX),
            }),
        }
    }
}
