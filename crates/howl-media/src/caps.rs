//! Whether this process may run desktop apps under other uids (the `uid` isolation level).
//! Both sides ask: the server at start-up, so a configured level that cannot be had stops it
//! instead of failing each launch, and the worker before it switches an app's uid.

/// Capabilities the `uid` level needs, with their bit numbers from linux/capability.h:
/// CAP_SETUID and CAP_SETGID to switch, CAP_CHOWN to hand the app its directory, and
/// CAP_DAC_OVERRIDE to keep reading the cookies and to remove the directory afterwards.
const NEEDED: [(u32, &str); 4] = [
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
];

/// Ok when this process has every capability the `uid` level needs (root has them all);
/// otherwise why not, naming the missing ones.
pub fn uid_isolation_available() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let missing = missing_from_status(&status)?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "desktop_isolation = \"uid\" needs root or {}, which this process lacks",
            missing.join(", ")
        ))
    }
}

/// The needed capabilities absent from the `CapEff` line of a `/proc/<pid>/status` text.
fn missing_from_status(status: &str) -> Result<Vec<&'static str>, String> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapEff line in /proc/self/status")?;
    Ok(NEEDED
        .into_iter()
        .filter(|(bit, _)| eff & (1u64 << bit) == 0)
        .map(|(_, name)| name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_capabilities_are_named() {
        let all = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(missing_from_status(all), Ok(vec![]));
        // Only CAP_SETUID (bit 7) and CAP_CHOWN (bit 0).
        let some = "CapEff:\t0000000000000081\n";
        assert_eq!(
            missing_from_status(some),
            Ok(vec!["CAP_DAC_OVERRIDE", "CAP_SETGID"])
        );
        assert!(missing_from_status("Name:\tx\n").is_err());
    }
}
