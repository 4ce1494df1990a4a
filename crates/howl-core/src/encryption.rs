//! Stream encryption by policy: what the host asks a Moonlight client to encrypt, decided per
//! launch from the network the client's `/launch` came from and what the client announced.
//!
//! The client library (moonlight-common-c) turns on every feature the host lists in
//! `encryptionRequested` (even where its user opted out) and the ones it wants among
//! `encryptionSupported`; it has no way to answer "cannot". So `required` is enforced twice: at
//! `/launch` (a client without encrypted RTSP, `corever` < 1, is refused) and at ANNOUNCE (the
//! client's `encryptionEnabled` must hold every required bit, else 403).

use howl_proto::sdp::EncryptionFlags;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What one network class gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptionMode {
    /// Request nothing and keep RTSP plain; a client that asks for encryption still gets it.
    Off,
    /// Request video, audio and control encryption and encrypted RTSP where the client can;
    /// serve a client that cannot.
    Preferred,
    /// As `preferred`, but refuse a client that cannot (no encrypted RTSP, or an ANNOUNCE
    /// without every feature).
    Required,
}

impl EncryptionMode {
    pub fn name(self) -> &'static str {
        match self {
            EncryptionMode::Off => "off",
            EncryptionMode::Preferred => "preferred",
            EncryptionMode::Required => "required",
        }
    }
}

impl std::str::FromStr for EncryptionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "preferred" => Ok(Self::Preferred),
            "required" => Ok(Self::Required),
            _ => Err(format!(
                "{s:?} is not an encryption mode (off, preferred, required)"
            )),
        }
    }
}

impl std::fmt::Display for EncryptionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a client's address lies, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkClass {
    /// 127.0.0.0/8, ::1 (and their IPv4-mapped forms).
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), IPv4 link-local 169.254/16, IPv6 unique local
    /// fc00::/7 and link-local fe80::/10.
    Lan,
    /// Everything else (the internet, carrier-grade NAT, VPN ranges the operator did not
    /// declare): the class that needs encryption most.
    Wan,
}

impl NetworkClass {
    pub fn of(addr: IpAddr) -> Self {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match addr {
            IpAddr::V4(v4) if v4.is_loopback() => Self::Loopback,
            IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() => Self::Lan,
            IpAddr::V6(v6) if v6.is_loopback() => Self::Loopback,
            // fc00::/7 unique local, fe80::/10 link-local.
            IpAddr::V6(v6)
                if v6.segments()[0] & 0xfe00 == 0xfc00 || v6.segments()[0] & 0xffc0 == 0xfe80 =>
            {
                Self::Lan
            }
            _ => Self::Wan,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NetworkClass::Loopback => "loopback",
            NetworkClass::Lan => "lan",
            NetworkClass::Wan => "wan",
        }
    }
}

/// The operator's setting: one mode per network class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionPolicy {
    pub loopback: EncryptionMode,
    pub lan: EncryptionMode,
    pub wan: EncryptionMode,
}

impl Default for EncryptionPolicy {
    /// `preferred` everywhere: AES-GCM costs about 16 µs per 100 KB frame, and a stock client
    /// that asks only for audio encryption would otherwise get its video in the clear.
    fn default() -> Self {
        Self {
            loopback: EncryptionMode::Preferred,
            lan: EncryptionMode::Preferred,
            wan: EncryptionMode::Preferred,
        }
    }
}

/// What one launch gets (no key material: this is what logs and the API show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionDecision {
    pub class: NetworkClass,
    pub mode: EncryptionMode,
    /// `x-ss-general.encryptionRequested` in DESCRIBE.
    pub requested: EncryptionFlags,
    /// Bits the client's ANNOUNCE must enable (403 otherwise).
    pub required: EncryptionFlags,
    /// Answer `rtspenc://` and frame the handshake with AES-GCM.
    pub rtsp_encrypted: bool,
}

/// A launch the policy refuses; the message is what the client's user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptionRefusal {
    #[error(
        "this host requires encryption for {} clients, and this client cannot encrypt its \
         RTSP handshake (corever < 1): update the Moonlight client",
        class.name()
    )]
    PlainRtspClient { class: NetworkClass },
}

/// The lowest `corever` that supports encrypted RTSP (reference part 1, §5.1).
pub const COREVER_RTSP_ENCRYPTION: i32 = 1;

impl EncryptionPolicy {
    pub fn mode_for(&self, class: NetworkClass) -> EncryptionMode {
        match class {
            NetworkClass::Loopback => self.loopback,
            NetworkClass::Lan => self.lan,
            NetworkClass::Wan => self.wan,
        }
    }

    /// The decision for a `/launch` or `/resume` from `client` that sent `corever` (absent
    /// counts as 0).
    pub fn decide(
        &self,
        client: IpAddr,
        corever: Option<i32>,
    ) -> Result<EncryptionDecision, EncryptionRefusal> {
        let class = NetworkClass::of(client);
        let mode = self.mode_for(class);
        let rtspenc_capable = corever.unwrap_or(0) >= COREVER_RTSP_ENCRYPTION;
        let (requested, required, rtsp_encrypted) = match mode {
            EncryptionMode::Off => (EncryptionFlags::NONE, EncryptionFlags::NONE, false),
            EncryptionMode::Preferred => {
                (EncryptionFlags::ALL, EncryptionFlags::NONE, rtspenc_capable)
            }
            EncryptionMode::Required => {
                if !rtspenc_capable {
                    return Err(EncryptionRefusal::PlainRtspClient { class });
                }
                (EncryptionFlags::ALL, EncryptionFlags::ALL, true)
            }
        };
        Ok(EncryptionDecision {
            class,
            mode,
            requested,
            required,
            rtsp_encrypted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classes_follow_the_address_ranges() {
        for (a, c) in [
            ("127.0.0.1", NetworkClass::Loopback),
            ("127.8.9.1", NetworkClass::Loopback),
            ("::1", NetworkClass::Loopback),
            ("::ffff:127.0.0.1", NetworkClass::Loopback),
            ("10.1.2.3", NetworkClass::Lan),
            ("172.16.0.1", NetworkClass::Lan),
            ("172.31.255.1", NetworkClass::Lan),
            ("192.168.1.20", NetworkClass::Lan),
            ("169.254.3.4", NetworkClass::Lan),
            ("::ffff:192.168.0.2", NetworkClass::Lan),
            ("fd12:3456::1", NetworkClass::Lan),
            ("fc00::1", NetworkClass::Lan),
            ("fe80::1", NetworkClass::Lan),
            ("172.32.0.1", NetworkClass::Wan),
            ("100.64.0.1", NetworkClass::Wan),
            ("8.8.8.8", NetworkClass::Wan),
            ("2001:db8::1", NetworkClass::Wan),
            ("fec0::1", NetworkClass::Wan),
        ] {
            assert_eq!(NetworkClass::of(ip(a)), c, "{a}");
        }
    }

    #[test]
    fn modes_decide_flags_and_rtsp() {
        let p = EncryptionPolicy {
            loopback: EncryptionMode::Off,
            lan: EncryptionMode::Preferred,
            wan: EncryptionMode::Required,
        };
        let off = p.decide(ip("127.0.0.1"), Some(1)).unwrap();
        assert_eq!(
            (off.requested, off.required, off.rtsp_encrypted),
            (EncryptionFlags::NONE, EncryptionFlags::NONE, false)
        );
        let pref = p.decide(ip("192.168.1.2"), Some(1)).unwrap();
        assert_eq!(
            (pref.requested, pref.required, pref.rtsp_encrypted),
            (EncryptionFlags::ALL, EncryptionFlags::NONE, true)
        );
        assert_eq!(pref.class, NetworkClass::Lan);
        // An older client is served over plain RTSP when encryption is only preferred.
        let old = p.decide(ip("192.168.1.2"), None).unwrap();
        assert!(!old.rtsp_encrypted);
        assert_eq!(old.requested, EncryptionFlags::ALL);
        let req = p.decide(ip("8.8.8.8"), Some(2)).unwrap();
        assert_eq!(
            (req.requested, req.required, req.rtsp_encrypted, req.mode),
            (
                EncryptionFlags::ALL,
                EncryptionFlags::ALL,
                true,
                EncryptionMode::Required
            )
        );
        for corever in [None, Some(0), Some(-1)] {
            let e = p.decide(ip("8.8.8.8"), corever).unwrap_err();
            assert_eq!(
                e,
                EncryptionRefusal::PlainRtspClient {
                    class: NetworkClass::Wan
                }
            );
            assert!(e.to_string().contains("requires encryption"), "{e}");
        }
    }

    #[test]
    fn default_prefers_everywhere_and_modes_parse() {
        let d = EncryptionPolicy::default();
        for c in [NetworkClass::Loopback, NetworkClass::Lan, NetworkClass::Wan] {
            assert_eq!(d.mode_for(c), EncryptionMode::Preferred);
        }
        for m in [
            EncryptionMode::Off,
            EncryptionMode::Preferred,
            EncryptionMode::Required,
        ] {
            assert_eq!(m.name().parse::<EncryptionMode>(), Ok(m));
        }
        assert_eq!(" Required ".parse(), Ok(EncryptionMode::Required));
        assert!("on".parse::<EncryptionMode>().is_err());
    }
}
