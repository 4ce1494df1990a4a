//! Docker apps: the desktop's app as a container, through the Docker Engine API (bollard).
//!
//! The container gets the display's X socket and the sound server's socket bind-mounted, with
//! `DISPLAY` and `PULSE_SERVER` pointing at them, and the two cookies that open them (read-only,
//! `XAUTHORITY` and `PULSE_COOKIE`), and carries the producer's marker twice: as
//! the `howl.producer` label (for operators and `docker ps --filter`) and as `HOWL_PRODUCER`
//! in its environment, so its processes (visible in the host's `/proc`) fall to the same
//! marker reaping as a process app's when the worker or the server dies. `AutoRemove` makes
//! Docker delete a container whose processes were reaped that way.
//!
//! The marker reaping needs to read and signal the container's processes, which run as root
//! (or a user of their own): a server running as a normal user can do neither. So the label
//! is the reaping path that needs no privilege beyond the Docker socket itself: the server
//! runs `howl-worker --reap-containers <marker or run directory>` ([`reap`]) at start-up and
//! after a Docker app's worker died, which removes (forced) every container whose label is
//! that marker or lies under that directory.

use crate::error::WorkerError;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use howl_media::protocol::{ContainerSpec, DesktopApp};
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Label carrying the producer's marker.
pub const PRODUCER_LABEL: &str = "howl.producer";
/// Where the sound server's socket appears inside the container.
const PULSE_IN_CONTAINER: &str = "/run/howl/pulse.sock";
/// Where the display's X authority file appears inside the container (read-only).
const XAUTH_IN_CONTAINER: &str = "/run/howl/Xauthority";
/// Where the sound server's cookie appears inside the container (read-only).
const PULSE_COOKIE_IN_CONTAINER: &str = "/run/howl/pulse-cookie";
/// Creating and starting the container (the image is local: no pull) must finish by then.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// `docker stop`'s grace before Docker kills the container, in seconds.
const STOP_GRACE_SECS: i32 = 2;
/// Stopping and removing must finish by then; after it the marker reaping is the backstop.
const STOP_DEADLINE: Duration = Duration::from_secs(8);

/// The container's definition: pure, so it is tested without a Docker daemon.
pub fn create_body(
    app: &DesktopApp,
    spec: &ContainerSpec,
    display: u32,
    pulse_socket: Option<&Path>,
    xauthority: &Path,
    pulse_cookie: &Path,
    marker: &str,
) -> ContainerCreateBody {
    let x_socket = format!("/tmp/.X11-unix/X{display}");
    // The socket file itself, not the directory: the container sees this display only, and
    // its cookie (the display refuses clients without it).
    let mut binds = vec![
        format!("{x_socket}:{x_socket}"),
        format!("{}:{XAUTH_IN_CONTAINER}:ro", xauthority.display()),
    ];
    let pulse = match pulse_socket {
        Some(p) => {
            binds.push(format!("{}:{PULSE_IN_CONTAINER}", p.display()));
            binds.push(format!(
                "{}:{PULSE_COOKIE_IN_CONTAINER}:ro",
                pulse_cookie.display()
            ));
            format!("unix:{PULSE_IN_CONTAINER}")
        }
        None => "unix:/nonexistent".to_owned(),
    };
    binds.extend(spec.mounts.iter().cloned());
    let mut env = vec![
        format!("DISPLAY=:{display}"),
        format!("XAUTHORITY={XAUTH_IN_CONTAINER}"),
        format!("PULSE_SERVER={pulse}"),
        format!("PULSE_COOKIE={PULSE_COOKIE_IN_CONTAINER}"),
        format!("{}={marker}", howl_media::PRODUCER_ENV),
    ];
    env.extend(app.env.iter().map(|(k, v)| format!("{k}={v}")));
    let cmd = if app.command.is_empty() {
        None
    } else {
        Some(
            std::iter::once(app.command.clone())
                .chain(app.args.iter().cloned())
                .collect(),
        )
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd,
        env: Some(env),
        labels: Some(HashMap::from([(
            PRODUCER_LABEL.to_owned(),
            marker.to_owned(),
        )])),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some(spec.network.clone()),
            auto_remove: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A running container. Dropping it stops and removes it (bounded by [`STOP_DEADLINE`]).
pub struct Container {
    id: String,
    docker: Docker,
    rt: Option<tokio::runtime::Runtime>,
    exited: mpsc::Receiver<String>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("id", &self.id).finish()
    }
}

fn docker_err(what: &str, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::Unsupported(format!("docker: {what}: {e}"))
}

impl Container {
    /// Creates and starts the container; a watcher reports its exit to [`Self::poll_exit`].
    pub fn start(body: ContainerCreateBody) -> Result<Self, WorkerError> {
        // One small runtime of its own: the worker is synchronous, bollard is async.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("howl-docker")
            .enable_all()
            .build()
            .map_err(|e| docker_err("runtime", e))?;
        let docker = Docker::connect_with_unix_defaults().map_err(|e| docker_err("connect", e))?;
        let image = body.image.clone().unwrap_or_default();
        let id = rt.block_on(async {
            tokio::time::timeout(START_DEADLINE, async {
                let created = docker
                    .create_container(None, body)
                    .await
                    .map_err(|e| docker_err(&format!("create from image {image:?}"), e))?;
                if let Err(e) = docker.start_container(&created.id, None).await {
                    let _ = docker
                        .remove_container(
                            &created.id,
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                    return Err(docker_err("start", e));
                }
                Ok(created.id)
            })
            .await
            .map_err(|_| docker_err("start", "deadline passed"))?
        })?;
        let (tx, exited) = mpsc::sync_channel(1);
        let (d, cid) = (docker.clone(), id.clone());
        rt.spawn(async move {
            let detail = match d.wait_container(&cid, None).next().await {
                Some(Ok(r)) => format!("container exit status: {}", r.status_code),
                // bollard reports a non-zero exit as an error carrying the code.
                Some(Err(e)) => format!("container ended: {e}"),
                None => "container ended".to_owned(),
            };
            let _ = tx.try_send(detail);
        });
        tracing::info!(container = %short(&id), %image, "container started");
        Ok(Self {
            id,
            docker,
            rt: Some(rt),
            exited,
        })
    }

    /// `Some(how)` once the container has ended by itself.
    pub fn poll_exit(&self) -> Option<String> {
        self.exited.try_recv().ok()
    }
}

/// Listing and removing leftovers must finish by then (the server bounds the process too).
const REAP_DEADLINE: Duration = Duration::from_secs(20);

/// Whether a container labelled `howl.producer=<label>` belongs to `scope`: the marker itself,
/// or any marker inside the directory `scope` (`/x/run` does not cover `/x/run2/...`).
pub fn in_scope(label: &str, scope: &str) -> bool {
    let scope = scope.trim_end_matches('/');
    label == scope
        || label
            .strip_prefix(scope)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Removes (forced: running ones are killed) every container, running or not, whose
/// `howl.producer` label is in `scope` (see [`in_scope`]). Returns the ids removed; an
/// unreachable daemon is an error (nothing of ours can be running on it then, or the operator
/// must look).
pub fn reap(scope: &str) -> Result<Vec<String>, WorkerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| docker_err("runtime", e))?;
    let docker = Docker::connect_with_unix_defaults().map_err(|e| docker_err("connect", e))?;
    rt.block_on(async {
        tokio::time::timeout(REAP_DEADLINE, async {
            let list = docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(HashMap::from([(
                        "label".to_owned(),
                        vec![PRODUCER_LABEL.to_owned()],
                    )])),
                    ..Default::default()
                }))
                .await
                .map_err(|e| docker_err("list containers", e))?;
            let mut removed = Vec::new();
            for c in list {
                let label = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(PRODUCER_LABEL))
                    .map(String::as_str)
                    .unwrap_or_default();
                let Some(id) = c.id.as_deref() else { continue };
                if !in_scope(label, scope) {
                    continue;
                }
                match docker
                    .remove_container(
                        id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await
                {
                    Ok(()) => removed.push(id.to_owned()),
                    // Auto-remove may have won the race: gone is what we wanted.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404 | 409,
                        ..
                    }) => {}
                    Err(e) => tracing::warn!(container = %short(id), error = %e, "cannot remove a leftover container"),
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|_| docker_err("reap", "deadline passed"))?
    })
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Drop for Container {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        let (docker, id) = (&self.docker, &self.id);
        let done = rt.block_on(async {
            tokio::time::timeout(STOP_DEADLINE, async {
                let _ = docker
                    .stop_container(
                        id,
                        Some(StopContainerOptions {
                            t: Some(STOP_GRACE_SECS),
                            signal: None,
                        }),
                    )
                    .await;
                // Already gone (AutoRemove) is fine; force covers a stop that failed.
                let _ = docker
                    .remove_container(
                        id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            })
            .await
            .is_ok()
        });
        if !done {
            tracing::warn!(container = %short(id), "container not stopped in time; marker reaping follows");
        }
        rt.shutdown_timeout(Duration::from_millis(200));
        tracing::info!(container = %short(id), "container stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_sees_the_display_the_sound_server_and_carries_the_marker() {
        let app = DesktopApp {
            command: "/howl-testapp".into(),
            args: vec!["--exit-after".into(), "5".into()],
            env: vec![("LANG".into(), "C.UTF-8".into())],
            working_dir: None,
            container: None,
        };
        let spec = ContainerSpec {
            image: "howl-test-app".into(),
            mounts: vec!["/srv/data:/data:ro".into()],
            network: "none".into(),
        };
        let b = create_body(
            &app,
            &spec,
            7,
            Some(Path::new("/state/run/desktop-9/app/pulse.sock")),
            Path::new("/state/run/desktop-9/app/Xauthority"),
            Path::new("/state/run/desktop-9/app/pulse-cookie"),
            "/state/run/w.sock",
        );
        assert_eq!(b.image.as_deref(), Some("howl-test-app"));
        assert_eq!(
            b.cmd.as_deref(),
            Some(&["/howl-testapp".into(), "--exit-after".into(), "5".into()][..])
        );
        let env = b.env.unwrap();
        for want in [
            "DISPLAY=:7",
            "PULSE_SERVER=unix:/run/howl/pulse.sock",
            "XAUTHORITY=/run/howl/Xauthority",
            "PULSE_COOKIE=/run/howl/pulse-cookie",
            "HOWL_PRODUCER=/state/run/w.sock",
            "LANG=C.UTF-8",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
        }
        assert_eq!(
            b.labels.unwrap().get(PRODUCER_LABEL).map(String::as_str),
            Some("/state/run/w.sock")
        );
        let hc = b.host_config.unwrap();
        assert_eq!(
            hc.binds.unwrap(),
            [
                "/tmp/.X11-unix/X7:/tmp/.X11-unix/X7",
                "/state/run/desktop-9/app/Xauthority:/run/howl/Xauthority:ro",
                "/state/run/desktop-9/app/pulse.sock:/run/howl/pulse.sock",
                "/state/run/desktop-9/app/pulse-cookie:/run/howl/pulse-cookie:ro",
                "/srv/data:/data:ro"
            ]
        );
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.auto_remove, Some(true));
    }

    #[test]
    fn reaping_scope_is_the_marker_or_its_directory() {
        assert!(in_scope("/s/run/worker-1-2.sock", "/s/run/worker-1-2.sock"));
        assert!(in_scope("/s/run/worker-1-2.sock", "/s/run"));
        assert!(in_scope("/s/run/worker-1-2.sock", "/s/run/"));
        assert!(!in_scope("/s/run2/worker-1-2.sock", "/s/run"));
        assert!(!in_scope(
            "/s/run/worker-1-2.sock",
            "/s/run/worker-1-3.sock"
        ));
        assert!(!in_scope(
            "/s/run/worker-1-22.sock",
            "/s/run/worker-1-2.sock"
        ));
        assert!(!in_scope("", "/s/run"));
    }

    #[test]
    fn without_sound_or_command_the_image_defaults_and_audio_is_pointed_nowhere() {
        let app = DesktopApp {
            command: String::new(),
            args: vec![],
            env: vec![],
            working_dir: None,
            container: None,
        };
        let spec = ContainerSpec {
            image: "x".into(),
            mounts: vec![],
            network: "none".into(),
        };
        let b = create_body(
            &app,
            &spec,
            3,
            None,
            Path::new("/d/Xauthority"),
            Path::new("/d/pulse-cookie"),
            "m",
        );
        assert!(b.cmd.is_none());
        assert!(
            b.env
                .unwrap()
                .contains(&"PULSE_SERVER=unix:/nonexistent".to_owned())
        );
        // The display and its cookie; no sound socket, no sound cookie.
        assert_eq!(b.host_config.unwrap().binds.unwrap().len(), 2);
    }
}
