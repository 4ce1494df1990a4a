//! The app catalogue: the built-in "Test Pattern" (and "Desktop" where the server offers it)
//! plus apps from the config file and the API.
//!
//! App IDs must be non-zero, fit a signed 32-bit integer and stay stable across restarts:
//! clients cache lists and box art by ID and compare it with `currentgame` (reference part 1,
//! 3.4). We derive the ID from the title, so the same title always gets the same ID.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Title of the built-in app that every howl lists.
pub const TEST_PATTERN_TITLE: &str = "Test Pattern";

/// Title of the built-in desktop (a window manager and a terminal), listed when the server
/// finds both programs.
pub const DESKTOP_TITLE: &str = "Desktop";

/// The built-in "Desktop": `wm` in the background and `terminal` as the app itself, so closing
/// the terminal ends the stream (and the producer's stop takes the window manager with the
/// process group). The paths travel as arguments, never spliced into the script, so no path
/// can inject shell syntax. The terminal asks for its place (`-geometry`, a user-specified
/// position): twm would otherwise wait for a click to place the first window, and the
/// desktop would stay black until then.
pub fn desktop_app(wm: &str, terminal: &str) -> AppConfig {
    AppConfig {
        title: DESKTOP_TITLE.to_owned(),
        kind: AppKind::Process {
            command: "/bin/sh".to_owned(),
            args: vec![
                "-c".to_owned(),
                r#""$1" & exec "$2" -geometry 100x32+16+16"#.to_owned(),
                "howl-desktop".to_owned(),
                wm.to_owned(),
                terminal.to_owned(),
            ],
            env: Default::default(),
            working_dir: None,
        },
        requires: NodeRequirements::default(),
    }
}

/// What runs when an app is launched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AppKind {
    /// A moving picture with a frame counter and a tone, drawn by the media worker.
    TestPattern {
        /// Tone frequency in Hz.
        #[serde(default = "default_tone_hz")]
        tone_hz: u32,
    },
    /// A program started inside the producer's display.
    Process {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        working_dir: Option<String>,
    },
    /// A container started (through the Docker Engine API) inside the producer's display: the
    /// display's X socket and the sound server's socket are mounted in, `DISPLAY` and
    /// `PULSE_SERVER` set. The image must be present locally (howl never pulls).
    Docker {
        image: String,
        /// Command and arguments; empty: the image's own.
        #[serde(default)]
        command: Vec<String>,
        #[serde(default)]
        env: std::collections::BTreeMap<String, String>,
        /// Extra bind mounts, `host-path:container-path[:ro]`.
        #[serde(default)]
        mounts: Vec<String>,
        /// Docker network mode; `none` unless the app needs the network.
        #[serde(default = "default_network")]
        network: String,
    },
    /// A camera, stream or file opened by the media worker (`rtsp://`, `rtsps://`, `http://`,
    /// `https://`, `file://`, `srt://`); a "no signal" slate covers outages while it reconnects.
    Source {
        /// May carry credentials (`rtsp://user:pass@host/...`): never logged or shown whole.
        uri: String,
    },
}

/// URI schemes a source app may use: what the worker's GStreamer can open.
pub const SOURCE_SCHEMES: [&str; 6] = ["rtsp", "rtsps", "http", "https", "file", "srt"];

/// Checks a source URI's shape: a known scheme, something after `://`, no control characters.
pub fn check_source_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("has no scheme (expected e.g. rtsp://host/path)".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    if !SOURCE_SCHEMES.contains(&scheme.as_str()) {
        return Err(format!(
            "scheme {scheme:?} is not one of {}",
            SOURCE_SCHEMES.join(", ")
        ));
    }
    if rest.is_empty() {
        return Err("has nothing after the scheme".into());
    }
    if uri.chars().any(char::is_control) || uri.contains(' ') {
        return Err("contains spaces or control characters (percent-encode them)".into());
    }
    Ok(())
}

/// The URI without its `user:password@` part, for logs, events and API views.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => uri.to_owned(),
    }
}

fn default_network() -> String {
    "none".to_owned()
}

fn default_tone_hz() -> u32 {
    440
}

/// An app entry as written in the config file. Unknown keys are rejected by the flattened
/// [`AppKind`] variant (serde cannot combine `deny_unknown_fields` with `flatten` here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppConfig {
    pub title: String,
    /// What a node must have to run it (`node_labels`, `requires_gpu`; placement). Before
    /// `kind`: a flattened struct takes its keys, so the kind's `deny_unknown_fields` never
    /// sees them.
    #[serde(flatten)]
    pub requires: NodeRequirements,
    #[serde(flatten)]
    pub kind: AppKind,
}

/// What a media node must offer to run an app's producer (docs/nodes.md, "Placement"):
/// every one of `node_labels` with that value, and a GPU when `requires_gpu`. Empty (the
/// default): any node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeRequirements {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_gpu: bool,
}

impl NodeRequirements {
    /// No requirement: any node runs it.
    pub fn is_empty(&self) -> bool {
        self.node_labels.is_empty() && !self.requires_gpu
    }

    /// The first requirement a node with `labels` and `gpus` GPUs does not meet, in words
    /// (`label gpu=nvidia`, `a GPU`); `None`: it meets them all.
    pub fn unmet(&self, labels: &BTreeMap<String, String>, gpus: u32) -> Option<String> {
        if let Some((k, v)) = self
            .node_labels
            .iter()
            .find(|(k, v)| labels.get(*k) != Some(*v))
        {
            return Some(format!("label {k}={v}"));
        }
        (self.requires_gpu && gpus == 0).then(|| "a GPU".to_owned())
    }
}

impl std::fmt::Display for NodeRequirements {
    /// `gpu=nvidia, a GPU`: what the app requires, for refusals and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .node_labels
            .iter()
            .map(|(k, v)| format!("label {k}={v}"))
            .collect();
        if self.requires_gpu {
            parts.push("a GPU".to_owned());
        }
        f.write_str(&parts.join(", "))
    }
}

/// Where an app was defined; only API-created apps can be changed through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppSource {
    Builtin,
    Config,
    Api,
}

/// An app created through the management API, as persisted in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApp {
    pub title: String,
    /// As in [`AppConfig`] (before `kind` for the same reason); absent when empty, so the
    /// state file of an app without requirements is unchanged.
    #[serde(flatten)]
    pub requires: NodeRequirements,
    #[serde(flatten)]
    pub kind: AppKind,
    /// The tenant that created it; `None` for the admin.
    #[serde(default)]
    pub owner: Option<u64>,
}

/// One app, with its stable ID. Its JSON (API views) shows a source URI without credentials;
/// what is persisted is [`StoredApp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub id: i32,
    pub title: String,
    #[serde(serialize_with = "serialize_redacted")]
    pub kind: AppKind,
    pub source: AppSource,
    /// The tenant that owns it (API-created by a tenant token); `None`: the operator's.
    pub owner: Option<u64>,
    /// What a node must offer to run it (configured apps only; empty: any node).
    #[serde(skip_serializing_if = "NodeRequirements::is_empty")]
    pub requires: NodeRequirements,
}

fn serialize_redacted<S: serde::Serializer>(kind: &AppKind, s: S) -> Result<S::Ok, S::Error> {
    match kind {
        AppKind::Source { uri } => AppKind::Source {
            uri: redact_uri(uri),
        }
        .serialize(s),
        other => other.serialize(s),
    }
}

/// Why a configured app list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("app title must not be empty")]
    EmptyTitle,
    #[error("app title {0:?} is longer than 256 bytes")]
    TitleTooLong(String),
    #[error("two apps are titled {0:?}; titles must be unique")]
    DuplicateTitle(String),
    #[error("app {0:?}: a process app needs a non-empty command")]
    EmptyCommand(String),
    #[error("app {0:?}: a docker app needs an image")]
    EmptyImage(String),
    #[error("app {0:?}: mount {1:?} is not host-path:container-path[:ro|:rw] with absolute paths")]
    BadMount(String, String),
    #[error("app {0:?}: source uri {1}")]
    BadSourceUri(String, String),
}

/// Stable, non-zero, positive 31-bit ID from a title (SHA-256, first four bytes).
pub fn app_id_for_title(title: &str) -> i32 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, title.as_bytes());
    let b = digest.as_ref();
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
    // Zero means "no app" to clients; map it away. The cast cannot wrap: v < 2^31.
    if v == 0 { 1 } else { v as i32 }
}

/// `host:container[:ro|:rw]`, both absolute (Docker would read a relative host part as a
/// volume name).
fn valid_mount(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    let paths_ok = |h: &str, c: &str| h.starts_with('/') && c.starts_with('/');
    match parts[..] {
        [h, c] => paths_ok(h, c),
        [h, c, mode] => paths_ok(h, c) && matches!(mode, "ro" | "rw"),
        _ => false,
    }
}

/// The validated list of apps, in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCatalog {
    apps: Vec<App>,
}

impl AppCatalog {
    /// The built-in test pattern first, then the configured apps.
    pub fn new(configured: &[AppConfig]) -> Result<Self, AppError> {
        Self::build(configured, &[])
    }

    /// The built-in test pattern, the configured apps, then the API-created ones. Titles are
    /// unique across all three (clients pick apps by title and ID).
    pub fn build(configured: &[AppConfig], stored: &[StoredApp]) -> Result<Self, AppError> {
        Self::build_with_builtins(&[], configured, stored)
    }

    /// Like [`Self::build`], with further built-in apps after the test pattern (the server's
    /// "Desktop"). A configured app or an operator's API app with a built-in's title replaces
    /// it, so an operator's own "Desktop" keeps working; a tenant's may not (it would hide the
    /// built-in from everyone) and is a duplicate.
    pub fn build_with_builtins(
        builtins: &[AppConfig],
        configured: &[AppConfig],
        stored: &[StoredApp],
    ) -> Result<Self, AppError> {
        let mut apps = vec![App {
            id: app_id_for_title(TEST_PATTERN_TITLE),
            title: TEST_PATTERN_TITLE.to_owned(),
            kind: AppKind::TestPattern {
                tone_hz: default_tone_hz(),
            },
            source: AppSource::Builtin,
            owner: None,
            requires: NodeRequirements::default(),
        }];
        for b in builtins {
            if apps.iter().any(|a| a.title == b.title) {
                return Err(AppError::DuplicateTitle(b.title.clone()));
            }
            apps.push(App {
                id: app_id_for_title(&b.title),
                title: b.title.clone(),
                kind: b.kind.clone(),
                source: AppSource::Builtin,
                owner: None,
                requires: b.requires.clone(),
            });
        }
        let entries = configured
            .iter()
            .map(|c| (&c.title, &c.kind, AppSource::Config, None, &c.requires))
            .chain(
                stored
                    .iter()
                    .map(|s| (&s.title, &s.kind, AppSource::Api, s.owner, &s.requires)),
            );
        for (title, kind, source, owner, requires) in entries {
            let title = title.trim();
            if title.is_empty() {
                return Err(AppError::EmptyTitle);
            }
            if title.len() > 256 {
                return Err(AppError::TitleTooLong(title.chars().take(40).collect()));
            }
            if let AppKind::Process { command, .. } = kind
                && command.trim().is_empty()
            {
                return Err(AppError::EmptyCommand(title.to_owned()));
            }
            if let AppKind::Docker { image, mounts, .. } = kind {
                if image.trim().is_empty() {
                    return Err(AppError::EmptyImage(title.to_owned()));
                }
                if let Some(m) = mounts.iter().find(|m| !valid_mount(m)) {
                    return Err(AppError::BadMount(title.to_owned(), m.clone()));
                }
            }
            if let AppKind::Source { uri } = kind
                && let Err(why) = check_source_uri(uri)
            {
                return Err(AppError::BadSourceUri(title.to_owned(), why));
            }
            if let Some(pos) = apps.iter().position(|a| a.title == title) {
                // A configured "Test Pattern" replaces the built-in one's settings.
                if title == TEST_PATTERN_TITLE
                    && source == AppSource::Config
                    && matches!(kind, AppKind::TestPattern { .. })
                {
                    apps[0].kind = kind.clone();
                    apps[0].requires = requires.clone();
                    continue;
                }
                // The operator's own app replaces a further built-in of that title.
                if pos > 0 && apps[pos].source == AppSource::Builtin && owner.is_none() {
                    apps.remove(pos);
                } else {
                    return Err(AppError::DuplicateTitle(title.to_owned()));
                }
            }
            apps.push(App {
                id: app_id_for_title(title),
                title: title.to_owned(),
                kind: kind.clone(),
                source,
                owner,
                requires: requires.clone(),
            });
        }
        Ok(Self { apps })
    }

    pub fn list(&self) -> &[App] {
        &self.apps
    }

    pub fn by_id(&self, id: i32) -> Option<&App> {
        self.apps.iter().find(|a| a.id == id)
    }

    pub fn by_title(&self, title: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.title == title)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pattern_is_always_first_and_ids_are_stable() {
        let cat = AppCatalog::new(&[]).unwrap();
        assert_eq!(cat.list()[0].title, TEST_PATTERN_TITLE);
        assert_eq!(cat.list()[0].id, app_id_for_title(TEST_PATTERN_TITLE));
        assert!(cat.list()[0].id > 0);
        let again = AppCatalog::new(&[]).unwrap();
        assert_eq!(cat, again);
    }

    #[test]
    fn rejects_duplicates_and_empty() {
        let p = |t: &str| AppConfig {
            title: t.into(),
            requires: Default::default(),
            kind: AppKind::Process {
                command: "xterm".into(),
                args: vec![],
                env: Default::default(),
                working_dir: None,
            },
        };
        assert_eq!(
            AppCatalog::new(&[p("a"), p("a")]),
            Err(AppError::DuplicateTitle("a".into()))
        );
        assert_eq!(AppCatalog::new(&[p("  ")]), Err(AppError::EmptyTitle));
        let cat = AppCatalog::new(&[p("Desktop")]).unwrap();
        assert_eq!(cat.list().len(), 2);
        assert!(cat.by_title("Desktop").is_some());
    }

    #[test]
    fn config_parses_from_toml_shape() {
        let json = r#"{"title":"X","kind":"process","command":"xterm","args":["-e","top"]}"#;
        let c: AppConfig = serde_json::from_str(json).unwrap();
        assert!(matches!(c.kind, AppKind::Process { .. }));
        let bad = r#"{"title":"X","kind":"nope"}"#;
        assert!(serde_json::from_str::<AppConfig>(bad).is_err());
        let typo = r#"{"title":"X","kind":"process","comand":"xterm"}"#;
        assert!(serde_json::from_str::<AppConfig>(typo).is_err());
    }

    #[test]
    fn the_desktop_builtin_follows_the_test_pattern_and_yields_to_the_operators_app() {
        let desk = desktop_app("/usr/bin/twm", "/usr/bin/xterm");
        let cat = AppCatalog::build_with_builtins(std::slice::from_ref(&desk), &[], &[]).unwrap();
        let titles: Vec<_> = cat.list().iter().map(|a| a.title.as_str()).collect();
        assert_eq!(titles, [TEST_PATTERN_TITLE, DESKTOP_TITLE]);
        assert_eq!(cat.list()[1].source, AppSource::Builtin);
        let AppKind::Process { command, args, .. } = &cat.list()[1].kind else {
            panic!("the desktop is a process app");
        };
        assert_eq!(command, "/bin/sh");
        assert_eq!(&args[3..], ["/usr/bin/twm", "/usr/bin/xterm"]);

        let own = AppConfig {
            title: DESKTOP_TITLE.into(),
            requires: Default::default(),
            kind: AppKind::Process {
                command: "startxfce4".into(),
                args: vec![],
                env: Default::default(),
                working_dir: None,
            },
        };
        let cat = AppCatalog::build_with_builtins(
            std::slice::from_ref(&desk),
            std::slice::from_ref(&own),
            &[],
        )
        .unwrap();
        assert_eq!(cat.list().len(), 2);
        let d = cat.by_title(DESKTOP_TITLE).unwrap();
        assert_eq!(d.source, AppSource::Config);
        assert!(matches!(&d.kind, AppKind::Process { command, .. } if command == "startxfce4"));

        let stored = |owner| StoredApp {
            requires: Default::default(),
            title: DESKTOP_TITLE.into(),
            kind: own.kind.clone(),
            owner,
        };
        let cat =
            AppCatalog::build_with_builtins(std::slice::from_ref(&desk), &[], &[stored(None)])
                .unwrap();
        assert_eq!(cat.by_title(DESKTOP_TITLE).unwrap().source, AppSource::Api);
        assert_eq!(
            AppCatalog::build_with_builtins(std::slice::from_ref(&desk), &[], &[stored(Some(7))]),
            Err(AppError::DuplicateTitle(DESKTOP_TITLE.into()))
        );
    }

    #[test]
    fn docker_apps_parse_with_defaults_and_are_checked() {
        let json = r#"{"title":"C","kind":"docker","image":"howl-test-app"}"#;
        let c: AppConfig = serde_json::from_str(json).unwrap();
        let AppKind::Docker {
            image,
            command,
            network,
            mounts,
            ..
        } = &c.kind
        else {
            panic!("docker kind");
        };
        assert_eq!(
            (image.as_str(), network.as_str()),
            ("howl-test-app", "none")
        );
        assert!(command.is_empty() && mounts.is_empty());
        assert!(AppCatalog::new(std::slice::from_ref(&c)).is_ok());
        let with = |image: &str, mount: &str| AppConfig {
            title: "C".into(),
            requires: Default::default(),
            kind: AppKind::Docker {
                image: image.into(),
                command: vec![],
                env: Default::default(),
                mounts: vec![mount.into()],
                network: "none".into(),
            },
        };
        assert_eq!(
            AppCatalog::new(&[with(" ", "/a:/b")]),
            Err(AppError::EmptyImage("C".into()))
        );
        assert!(AppCatalog::new(&[with("i", "/a:/b:ro")]).is_ok());
        for bad in ["a:/b", "/a:b", "/a", "/a:/b:rx", "/a:/b:ro:x"] {
            assert_eq!(
                AppCatalog::new(&[with("i", bad)]),
                Err(AppError::BadMount("C".into(), bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn node_requirements_parse_beside_any_kind_and_reach_the_app() {
        let json = r#"{"title":"Game","kind":"process","command":"game",
            "node_labels":{"gpu":"nvidia"},"requires_gpu":true}"#;
        let c: AppConfig = serde_json::from_str(json).unwrap();
        assert_eq!(
            c.requires.node_labels.get("gpu").map(String::as_str),
            Some("nvidia")
        );
        assert!(c.requires.requires_gpu);
        let cat = AppCatalog::new(std::slice::from_ref(&c)).unwrap();
        let app = cat.by_title("Game").unwrap();
        assert_eq!(app.requires, c.requires);
        assert_eq!(app.requires.to_string(), "label gpu=nvidia, a GPU");
        // What a node lacks, in words; a node that has it all meets them.
        let labels = BTreeMap::from([("gpu".to_owned(), "amd".to_owned())]);
        assert_eq!(
            app.requires.unmet(&labels, 1).as_deref(),
            Some("label gpu=nvidia")
        );
        let labels = BTreeMap::from([("gpu".to_owned(), "nvidia".to_owned())]);
        assert_eq!(app.requires.unmet(&labels, 0).as_deref(), Some("a GPU"));
        assert_eq!(app.requires.unmet(&labels, 1), None);
        // None set: any node; a misspelt key is still refused.
        let plain: AppConfig =
            serde_json::from_str(r#"{"title":"P","kind":"test-pattern"}"#).unwrap();
        assert!(plain.requires.is_empty());
        let typo = r#"{"title":"P","kind":"test-pattern","requires_gpus":true}"#;
        assert!(serde_json::from_str::<AppConfig>(typo).is_err());
        // An API app keeps them in the state file; one without writes nothing new.
        let stored = StoredApp {
            title: "S".into(),
            requires: c.requires.clone(),
            kind: AppKind::TestPattern { tone_hz: 440 },
            owner: None,
        };
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(serde_json::from_str::<StoredApp>(&json).unwrap(), stored);
        let cat = AppCatalog::build(&[], std::slice::from_ref(&stored)).unwrap();
        assert_eq!(cat.by_title("S").unwrap().requires, c.requires);
        let bare = StoredApp {
            requires: NodeRequirements::default(),
            ..stored
        };
        let json = serde_json::to_string(&bare).unwrap();
        assert!(
            !json.contains("node_labels") && !json.contains("requires"),
            "{json}"
        );
    }

    #[test]
    fn source_apps_parse_and_their_uris_are_checked() {
        let json = r#"{"title":"Cam","kind":"source","uri":"rtsp://u:p@10.0.0.2/s"}"#;
        let c: AppConfig = serde_json::from_str(json).unwrap();
        assert!(AppCatalog::new(std::slice::from_ref(&c)).is_ok());
        for bad in [
            "10.0.0.2/s",
            "gopher://x",
            "rtsp://",
            "rtsp://a b",
            "v4l2:///dev/video0",
        ] {
            let c = AppConfig {
                title: "Cam".into(),
                requires: Default::default(),
                kind: AppKind::Source { uri: bad.into() },
            };
            assert!(
                matches!(AppCatalog::new(&[c]), Err(AppError::BadSourceUri(..))),
                "{bad}"
            );
        }
        for ok in [
            "file:///tmp/a.mp4",
            "https://example.org/live.m3u8",
            "srt://127.0.0.1:9000",
            "RTSP://cam/1",
        ] {
            assert_eq!(check_source_uri(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            redact_uri("rtsp://u:secret@10.0.0.2:554/a@b"),
            "rtsp://***@10.0.0.2:554/a@b"
        );
        assert_eq!(redact_uri("file:///x@y"), "file:///x@y");
        let cat = AppCatalog::new(&[c]).unwrap();
        let json = serde_json::to_string(cat.by_title("Cam").unwrap()).unwrap();
        assert!(
            json.contains("rtsp://***@10.0.0.2/s") && !json.contains("u:p"),
            "{json}"
        );
        assert_eq!(redact_uri("srt://h:1"), "srt://h:1");
    }

    #[test]
    fn ids_are_positive_for_many_titles() {
        for i in 0..10_000 {
            let id = app_id_for_title(&format!("app {i}"));
            assert!(id > 0);
        }
    }
}
