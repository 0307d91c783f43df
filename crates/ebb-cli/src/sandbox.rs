//! `--sandbox`: every destination of the project whose URL is on this machine gets an
//! emulator of its API inside this process (ebb-sandbox), so the quickstart runs with no
//! server to install. What the emulators hold is kept under `.ebb/sandbox/`.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context as _, Result};
use ebb_core::config::project::DestinationConfig;
use ebb_core::project::Project;
use ebb_sandbox::{Kind, Sandbox, SandboxOptions, serve_with};

/// The running emulators; [`Sandboxes::shutdown`] saves their state.
#[derive(Debug, Default)]
pub struct Sandboxes {
    running: Vec<Sandbox>,
}

impl Sandboxes {
    pub async fn shutdown(self) -> Result<()> {
        for s in self.running {
            s.shutdown().await?;
        }
        Ok(())
    }
}

/// A loopback address a destination talks to, if it has one.
fn loopback(config: &DestinationConfig) -> Option<SocketAddr> {
    let url = url::Url::parse(config.url()?).ok()?;
    let host = url.host_str()?;
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") {
        return None;
    }
    let port = url.port_or_known_default()?;
    (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .ok()?
        .find(|a| a.ip().is_loopback())
}

/// Starts an emulator for every loopback destination with a sandbox.
pub async fn start(project: &Project) -> Result<Sandboxes> {
    let mut sandboxes = Sandboxes::default();
    let Some(config) = &project.config else {
        return Ok(sandboxes);
    };
    let dir = ebb_sync::state_dir(project).join("sandbox");
    let mut taken = HashSet::new();
    for (name, destination) in config.destinations.iter() {
        let destination = &destination.value;
        let Some(kind) = Kind::from_destination_kind(destination.kind()) else {
            continue;
        };
        let Some(addr) = loopback(destination) else {
            say!(
                "sandbox: destination {} is not on this machine; it is used as configured",
                name.value
            );
            continue;
        };
        if !taken.insert(addr) {
            continue;
        }
        let mut options = SandboxOptions::in_dir(&dir);
        // The webhook receiver checks ebb's signatures with the destination's own secret.
        if let DestinationConfig::Webhook {
            secret: Some(secret),
            ..
        } = destination
        {
            options = options.credential(secret.expose());
        }
        let sandbox = serve_with(kind, addr, &options).await.with_context(|| {
            format!(
                "cannot start the {kind} sandbox for destination {}",
                name.value
            )
        })?;
        say!(
            "sandbox: {kind} emulator for destination {} on {} (keeps {})",
            name.value,
            sandbox.addr(),
            ebb_sync::display_path(&dir.join(kind.state_file_name()))
        );
        sandboxes.running.push(sandbox);
    }
    Ok(sandboxes)
}
