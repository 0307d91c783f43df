//! [`AnyDestination`]: every destination behind one type, built from a destination in
//! `ebb.yml`.
//!
//! The [`Destination`] trait uses `async fn`, so it is not object safe; an enum that
//! delegates each method is the registry instead (static dispatch, no boxing). Adding a
//! destination means one variant here and one arm in each `match`.
//!
//! A destination in `ebb.yml` describes an *account* (a HubSpot token, a Salesforce org, a
//! Postgres database); the sync says which object in it (`object:`) and which field finds
//! a record (`match.destination`). [`AnyDestination::from_config`] builds the account with
//! defaults for both; [`AnyDestination::for_sync`] (or [`AnyDestination::for_target`])
//! points it at a sync's object.

use std::path::Path;

use ebb_core::config::project::DestinationConfig;
use ebb_core::config::sync::SyncConfig;

use crate::destinations::braze::{BrazeConfig, BrazeDestination};
use crate::destinations::hubspot::{HubspotConfig, HubspotDestination};
use crate::destinations::parquet::{ParquetConfig, ParquetDestination};
use crate::destinations::postgres::{PostgresConfig, PostgresDestination};
use crate::destinations::salesforce::{SalesforceConfig, SalesforceDestination};
use crate::destinations::webhook::{WebhookConfig, WebhookDestination};
use crate::{
    Capabilities, Destination, DestinationError, MappingProblem, Operation, Record, WriteOutcome,
};

/// Which object of the account a sync writes, and the field that finds a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// HubSpot object type, Salesforce sObject, Postgres table, Parquet dataset folder.
    /// `None`: the destination's default (see [`AnyDestination::from_config`]).
    pub object: Option<String>,
    /// HubSpot `idProperty`, Salesforce external id field, Postgres key column.
    /// `None`: the destination's default.
    pub match_field: Option<String>,
}

impl Target {
    /// The target a sync names (`object:` and `match.destination`).
    pub fn of_sync(sync: &SyncConfig) -> Target {
        Target {
            object: sync.object.clone(),
            match_field: sync.match_on.as_ref().map(|m| m.destination.value.clone()),
        }
    }
}

/// Any destination ebb has, built from config. Implements [`Destination`] by delegation.
#[derive(Debug)]
pub enum AnyDestination {
    Webhook(WebhookDestination),
    Hubspot(HubspotDestination),
    Salesforce(SalesforceDestination),
    Braze(BrazeDestination),
    Postgres(PostgresDestination),
    Parquet(ParquetDestination),
}

/// A config problem of destination `name`, as a fatal error naming it.
fn fatal(name: &str, reason: impl std::fmt::Display) -> DestinationError {
    DestinationError::Fatal {
        reason: format!("destination \"{name}\": {reason}"),
    }
}

impl AnyDestination {
    /// Builds destination `name` of `ebb.yml` (no I/O: connections are made on the first
    /// write). Relative paths (Parquet `path`) are resolved against `project_dir`.
    ///
    /// Unless [`for_sync`](AnyDestination::for_sync) says otherwise, the object and
    /// match field are: HubSpot `contacts` by `email`; Salesforce `Contact` by `Id`;
    /// Postgres table `name` by column `id`; Parquet files under `path/name/`.
    pub fn from_config(
        name: &str,
        config: &DestinationConfig,
        project_dir: &Path,
    ) -> Result<AnyDestination, DestinationError> {
        Self::build(name, config, project_dir, &Target::default())
    }

    /// [`from_config`](AnyDestination::from_config), pointed at the object and match field
    /// of `sync`.
    pub fn for_sync(
        name: &str,
        config: &DestinationConfig,
        project_dir: &Path,
        sync: &SyncConfig,
    ) -> Result<AnyDestination, DestinationError> {
        Self::build(name, config, project_dir, &Target::of_sync(sync))
    }

    /// [`from_config`](AnyDestination::from_config), pointed at `target`'s object and
    /// match field. Webhook and Braze have neither and ignore it.
    pub fn for_target(
        name: &str,
        config: &DestinationConfig,
        project_dir: &Path,
        target: &Target,
    ) -> Result<AnyDestination, DestinationError> {
        Self::build(name, config, project_dir, target)
    }

    fn build(
        name: &str,
        config: &DestinationConfig,
        project_dir: &Path,
        target: &Target,
    ) -> Result<AnyDestination, DestinationError> {
        let object = target.object.as_deref();
        let field = target.match_field.as_deref();
        let wrap = |e: DestinationError| match e {
            DestinationError::Fatal { reason } => fatal(name, reason),
            other => other,
        };
        Ok(match config {
            DestinationConfig::Webhook { .. } => {
                let c = WebhookConfig::from_config(config).map_err(|e| fatal(name, e))?;
                AnyDestination::Webhook(WebhookDestination::new(c).map_err(wrap)?)
            }
            DestinationConfig::Hubspot { .. } => {
                let object = object.unwrap_or("contacts");
                let id_property = match (field, object) {
                    (Some(f), _) => f,
                    (None, "contacts") => "email",
                    (None, "companies") => "domain",
                    (None, other) => {
                        return Err(fatal(
                            name,
                            format!(
                                "HubSpot object \"{other}\" has no default unique property; set the sync's match.destination to one"
                            ),
                        ));
                    }
                };
                let c = HubspotConfig::from_config(config, object, id_property)
                    .map_err(|e| fatal(name, e))?;
                AnyDestination::Hubspot(HubspotDestination::new(c).map_err(wrap)?)
            }
            DestinationConfig::Braze { .. } => {
                let c = BrazeConfig::from_config(config).map_err(|e| fatal(name, e))?;
                AnyDestination::Braze(BrazeDestination::new(c).map_err(wrap)?)
            }
            DestinationConfig::Salesforce { .. } => {
                let c = SalesforceConfig::from_config(
                    config,
                    object.unwrap_or("Contact"),
                    field.unwrap_or("Id"),
                )
                .map_err(|e| fatal(name, e))?;
                AnyDestination::Salesforce(SalesforceDestination::new(c).map_err(wrap)?)
            }
            DestinationConfig::Postgres { .. } => {
                let c = PostgresConfig::from_config(
                    config,
                    object.unwrap_or(name),
                    field.unwrap_or("id"),
                )
                .map_err(|e| fatal(name, e))?;
                AnyDestination::Postgres(PostgresDestination::new(c).map_err(wrap)?)
            }
            DestinationConfig::Parquet { .. } => {
                let c = ParquetConfig::from_config(config, project_dir, object.unwrap_or(name))
                    .map_err(|e| fatal(name, e))?;
                AnyDestination::Parquet(ParquetDestination::new(c).map_err(wrap)?)
            }
        })
    }
}

/// Calls `$call` on whichever destination `$self` holds.
macro_rules! delegate {
    ($self:expr, $d:ident => $call:expr) => {
        match $self {
            AnyDestination::Webhook($d) => $call,
            AnyDestination::Hubspot($d) => $call,
            AnyDestination::Salesforce($d) => $call,
            AnyDestination::Braze($d) => $call,
            AnyDestination::Postgres($d) => $call,
            AnyDestination::Parquet($d) => $call,
        }
    };
}

impl Destination for AnyDestination {
    fn kind(&self) -> &'static str {
        delegate!(self, d => d.kind())
    }

    fn account(&self) -> String {
        delegate!(self, d => d.account())
    }

    fn capabilities(&self) -> Capabilities {
        delegate!(self, d => d.capabilities())
    }

    fn requests_per_write(&self, op: Operation) -> usize {
        delegate!(self, d => d.requests_per_write(op))
    }

    fn validate_mapping(&self, fields: &[&str]) -> Result<(), Vec<MappingProblem>> {
        delegate!(self, d => d.validate_mapping(fields))
    }

    async fn write(&self, records: &[Record]) -> Result<WriteOutcome, DestinationError> {
        delegate!(self, d => d.write(records).await)
    }
}

#[cfg(test)]
mod tests {
    use ebb_core::Secret;

    use super::*;

    fn hubspot() -> DestinationConfig {
        DestinationConfig::Hubspot {
            token: Secret::new("t"),
            base_url: Some("http://127.0.0.1:8788".into()),
            timeout: None,
        }
    }

    #[test]
    fn builds_each_kind_and_names_the_destination_in_errors() {
        let dir = Path::new("/tmp/project");
        let d = AnyDestination::from_config("crm", &hubspot(), dir).unwrap();
        assert_eq!(d.kind(), "hubspot");
        let bad = DestinationConfig::Hubspot {
            token: Secret::new(""),
            base_url: None,
            timeout: None,
        };
        let err = AnyDestination::from_config("crm", &bad, dir).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("destination \"crm\": token is empty"),
            "{err}"
        );
        let target = Target {
            object: Some("2-999".into()),
            match_field: None,
        };
        let err = AnyDestination::for_target("crm", &hubspot(), dir, &target).unwrap_err();
        assert!(err.to_string().contains("match.destination"), "{err}");
        let webhook = DestinationConfig::Webhook {
            url: "http://127.0.0.1:8787/hooks".into(),
            secret: Some(Secret::new("whsec_L0eGefLzfEu8fI7tbSD7Sw7HVMUV5lTG")),
            secrets: vec![],
            batch_size: None,
            timeout: None,
        };
        assert_eq!(
            AnyDestination::from_config("hook", &webhook, dir)
                .unwrap()
                .kind(),
            "webhook"
        );
        let salesforce = DestinationConfig::Salesforce {
            instance_url: "https://acme.my.salesforce.com".into(),
            token: Secret::new("00D!token"),
            api_version: Some("v61.0".into()),
            timeout: None,
        };
        let d = AnyDestination::from_config("sfdc", &salesforce, dir).unwrap();
        assert_eq!(d.kind(), "salesforce");
        assert!(
            !d.capabilities().supports(Operation::Insert),
            "insert-only needs an external id, not Id"
        );
        let target = Target {
            object: Some("Contact".into()),
            match_field: Some("Ebb_Id__c".into()),
        };
        let d = AnyDestination::for_target("sfdc", &salesforce, dir, &target).unwrap();
        assert!(d.capabilities().supports(Operation::Insert));
        let postgres = DestinationConfig::Postgres {
            url: Secret::new("postgres://ebb@127.0.0.1:5432/mart"),
            schema: None,
        };
        let d = AnyDestination::from_config("mart", &postgres, dir).unwrap();
        assert_eq!(
            (d.kind(), d.capabilities().max_batch_records),
            ("postgres", 5_000)
        );
        let parquet = DestinationConfig::Parquet {
            path: "exports".into(),
        };
        let d = AnyDestination::from_config("lake", &parquet, dir).unwrap();
        assert_eq!(d.kind(), "parquet");
        assert!(!d.capabilities().partial_updates);
    }
}
