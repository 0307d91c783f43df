//! Postgres table settings: the database (`url`, `schema`) from `ebb.yml`, the table and
//! its key column from the sync.

use ebb_core::Secret;
use ebb_core::config::project::DestinationConfig;

/// Records in one write: one COPY and one statement per distinct field set.
pub const MAX_BATCH_RECORDS: usize = 5_000;

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user:pass@host:port/db` or a libpq key/value string.
    pub url: Secret,
    /// Default `public`.
    pub schema: String,
    pub table: String,
    /// The column that finds a row; it needs a primary key or unique index for upserts.
    pub key_column: String,
}

impl PostgresConfig {
    pub fn new(
        url: Secret,
        schema: &str,
        table: &str,
        key_column: &str,
    ) -> Result<PostgresConfig, String> {
        let config = PostgresConfig {
            url,
            schema: schema.to_string(),
            table: table.to_string(),
            key_column: key_column.to_string(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the `postgres` kind of a destination in `ebb.yml`; the sync names the table
    /// (`object:`) and the key column (`match.destination`).
    pub fn from_config(
        config: &DestinationConfig,
        table: &str,
        key_column: &str,
    ) -> Result<PostgresConfig, String> {
        let DestinationConfig::Postgres { url, schema } = config else {
            return Err(format!("destination is {}, not postgres", config.kind()));
        };
        PostgresConfig::new(
            url.clone(),
            schema.as_deref().unwrap_or("public"),
            table,
            key_column,
        )
    }

    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.expose().trim().is_empty() {
            return Err(
                "url is empty; set it to the database, e.g. url: ${DEST_DATABASE_URL}".into(),
            );
        }
        for (what, name) in [
            ("schema", &self.schema),
            ("table (the sync's object)", &self.table),
            (
                "key column (the sync's match.destination)",
                &self.key_column,
            ),
        ] {
            if name.is_empty() || name.len() > 63 || name.contains('\0') {
                return Err(format!(
                    "{what} \"{name}\" is not a Postgres identifier (1 to 63 characters)"
                ));
            }
        }
        Ok(())
    }

    /// `"schema"."table"`.
    pub fn qualified_table(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

/// An identifier in double quotes, quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
