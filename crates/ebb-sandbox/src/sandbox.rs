//! Serving an emulator in-process on a given address, for the quickstart: `ebb run` starts
//! a HubSpot stand-in on `127.0.0.1:8788` and a webhook receiver on `127.0.0.1:8787`, the
//! project's syncs deliver to them, and what they hold is kept in
//! `.ebb/sandbox/<kind>.json` (loaded when they start, saved after every change and on
//! [`Sandbox::shutdown`]).
//!
//! A sandbox is an emulator with the leniency a first run needs: it takes any credential
//! unless [`SandboxOptions::credential`] names one, and the CRM stand-ins create the
//! properties (fields) a sync writes instead of refusing unknown ones. Everything else —
//! batch limits, documented rate limits with 429s, per-record validation — is the
//! emulator's.
//!
//! ```no_run
//! # async fn example() -> Result<(), ebb_sandbox::SandboxError> {
//! use ebb_sandbox::{Kind, SandboxOptions, serve_with};
//!
//! let hubspot = serve_with(
//!     Kind::Hubspot,
//!     "127.0.0.1:8788".parse().unwrap(),
//!     &SandboxOptions::in_dir(".ebb/sandbox"),
//! )
//! .await?;
//! // ... deliver to hubspot.base_url() ...
//! hubspot.shutdown().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::braze::{BrazeEmulator, BrazeOptions};
use crate::hubspot::HubspotEmulator;
use crate::salesforce::SalesforceEmulator;
use crate::webhook::{WebhookOptions, WebhookReceiver};

/// Which API a sandbox stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Webhook,
    Hubspot,
    Salesforce,
    Braze,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Webhook, Kind::Hubspot, Kind::Salesforce, Kind::Braze];

    /// `webhook`, `hubspot`, `salesforce`, `braze`: the destination kind in `ebb.yml`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Hubspot => "hubspot",
            Kind::Salesforce => "salesforce",
            Kind::Braze => "braze",
        }
    }

    /// The sandbox for a destination kind of `ebb.yml`, if there is one (Postgres and
    /// Parquet destinations need none).
    pub fn from_destination_kind(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// `<kind>.json`.
    pub fn state_file_name(self) -> String {
        format!("{}.json", self.name())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a sandbox runs.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// The folder of `<kind>.json` (e.g. `.ebb/sandbox`); `None` keeps state in memory.
    pub state_dir: Option<PathBuf>,
    /// The credential it takes: HubSpot or Salesforce token, Braze API key, or the
    /// webhook's `whsec_` secret (then signatures are verified). `None`: any bearer token,
    /// and the webhook receiver checks no signature.
    pub credential: Option<String>,
}

impl SandboxOptions {
    /// State kept in `dir`, any credential.
    pub fn in_dir(dir: impl Into<PathBuf>) -> SandboxOptions {
        SandboxOptions {
            state_dir: Some(dir.into()),
            credential: None,
        }
    }

    pub fn credential(mut self, credential: impl Into<String>) -> SandboxOptions {
        self.credential = Some(credential.into());
        self
    }
}

/// Why a sandbox cannot start or save.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "cannot listen on {addr}: {source}; is another program (or another `ebb run`) using that port?"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error("{message}")]
    Config { message: String },
}

/// A running sandbox; it stops when dropped (state saved after every change survives),
/// or with [`Sandbox::shutdown`], which saves once more.
#[derive(Debug)]
pub enum Sandbox {
    Webhook(WebhookReceiver),
    Hubspot(HubspotEmulator),
    Salesforce(SalesforceEmulator),
    Braze(BrazeEmulator),
}

/// Starts a sandbox of `kind` on `addr` with state in memory and any credential (see
/// [`serve_with`]).
pub async fn serve(kind: Kind, addr: SocketAddr) -> Result<Sandbox, SandboxError> {
    serve_with(kind, addr, &SandboxOptions::default()).await
}

/// Starts a sandbox of `kind` on `addr` (port 0: any free port), loading
/// `<state_dir>/<kind>.json` when it exists.
pub async fn serve_with(
    kind: Kind,
    addr: SocketAddr,
    options: &SandboxOptions,
) -> Result<Sandbox, SandboxError> {
    let state_file = options
        .state_dir
        .as_ref()
        .map(|dir| dir.join(kind.state_file_name()));
    let sandbox = match kind {
        Kind::Webhook => Sandbox::Webhook(
            WebhookReceiver::start_with(WebhookOptions {
                secret: options.credential.clone(),
                addr,
                state_file,
            })
            .await?,
        ),
        Kind::Hubspot => {
            let mut builder = HubspotEmulator::builder(options.credential.as_deref().unwrap_or(""))
                .lenient()
                .addr(addr);
            if options.credential.is_none() {
                builder = builder.any_token();
            }
            if let Some(path) = state_file {
                builder = builder.state_file(path);
            }
            Sandbox::Hubspot(builder.try_start().await?)
        }
        Kind::Salesforce => {
            let mut builder =
                SalesforceEmulator::builder(options.credential.as_deref().unwrap_or(""))
                    .lenient()
                    .addr(addr);
            if options.credential.is_none() {
                builder = builder.any_token();
            }
            if let Some(path) = state_file {
                builder = builder.state_file(path);
            }
            Sandbox::Salesforce(builder.try_start().await?)
        }
        Kind::Braze => Sandbox::Braze(
            BrazeEmulator::start_with(BrazeOptions {
                api_key: options.credential.clone(),
                addr,
                state_file,
                ..BrazeOptions::default()
            })
            .await?,
        ),
    };
    tracing::info!(sandbox = %kind, addr = %sandbox.addr(), "sandbox listening");
    Ok(sandbox)
}

impl Sandbox {
    pub fn kind(&self) -> Kind {
        match self {
            Sandbox::Webhook(_) => Kind::Webhook,
            Sandbox::Hubspot(_) => Kind::Hubspot,
            Sandbox::Salesforce(_) => Kind::Salesforce,
            Sandbox::Braze(_) => Kind::Braze,
        }
    }

    /// The address it listens on (the bound port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        match self {
            Sandbox::Webhook(e) => e.addr(),
            Sandbox::Hubspot(e) => e.addr(),
            Sandbox::Salesforce(e) => e.addr(),
            Sandbox::Braze(e) => e.addr(),
        }
    }

    /// `http://ADDR`: a destination's `base_url` / `instance_url` (the webhook receiver
    /// takes POSTs on any path under it).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Writes the state file now.
    pub fn save(&self) -> Result<(), SandboxError> {
        match self {
            Sandbox::Webhook(e) => e.save(),
            Sandbox::Hubspot(e) => e.save(),
            Sandbox::Salesforce(e) => e.save(),
            Sandbox::Braze(e) => e.save(),
        }
    }

    /// Saves the state and stops serving.
    pub async fn shutdown(self) -> Result<(), SandboxError> {
        self.save()?;
        drop(self);
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// `<dir>/<kind>.json`, where a sandbox of `kind` keeps its state.
pub fn state_path(dir: &Path, kind: Kind) -> PathBuf {
    dir.join(kind.state_file_name())
}
