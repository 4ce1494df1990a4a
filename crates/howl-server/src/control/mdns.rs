//! mDNS advertisement of `_nvstream._tcp`, so Moonlight clients on the LAN find the host.
//! The SRV port is the NVHTTP HTTP port (reference part 1, 1.2).

use mdns_sd::{ServiceDaemon, ServiceInfo};

const SERVICE_TYPE: &str = "_nvstream._tcp.local.";

/// Keeps the advertisement alive; dropping it unregisters (bounded: the daemon's own
/// shutdown does not wait for network I/O).
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Advertisement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertisement")
            .field("fullname", &self.fullname)
            .finish()
    }
}

/// Starts advertising `instance` on `port`.
pub fn advertise(instance: &str, port: u16) -> Result<Advertisement, mdns_sd::Error> {
    let daemon = ServiceDaemon::new()?;
    let host = format!("{}.local.", sanitize(instance));
    let info = ServiceInfo::new(SERVICE_TYPE, instance, &host, "", port, None)?.enable_addr_auto();
    let fullname = info.get_fullname().to_owned();
    daemon.register(info)?;
    Ok(Advertisement { daemon, fullname })
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        // Both calls only queue a message to the daemon thread; neither blocks.
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// mDNS host labels: letters, digits and dashes.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if s.is_empty() { "howl".into() } else { s }
}
