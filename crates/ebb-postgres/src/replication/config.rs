//! Where and how to connect: a libpq-style connection string or URL, parsed without I/O.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

/// Whether and how to use TLS, with libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never.
    Disable,
    /// TLS if the server offers it, without verifying its certificate (libpq's default).
    #[default]
    Prefer,
    /// TLS or fail, without verifying the certificate.
    Require,
    /// TLS or fail, verifying the certificate chain and the host name (against `sslrootcert`,
    /// or the Mozilla roots when none is given).
    VerifyFull,
}

/// The server's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address.
    Tcp(String),
    /// The directory holding the server's Unix socket.
    Unix(PathBuf),
}

/// Everything needed to open a replication connection.
#[derive(Clone)]
pub struct ReplicationConfig {
    /// Server address.
    pub host: Host,
    /// Server port (also names the Unix socket file).
    pub port: u16,
    /// Role to log in as; it needs the `REPLICATION` attribute.
    pub user: String,
    /// Password, for cleartext, MD5 or SCRAM-SHA-256 authentication.
    pub password: Option<SecretString>,
    /// Database whose changes are decoded.
    pub dbname: String,
    /// Shown in `pg_stat_replication`.
    pub application_name: String,
    /// TLS policy.
    pub ssl_mode: SslMode,
    /// PEM file of the certificate authorities to trust with [`SslMode::VerifyFull`].
    pub ssl_root_cert: Option<PathBuf>,
    /// A complete rustls configuration, overriding `ssl_mode`'s verification and `ssl_root_cert`.
    pub tls_config: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Limit on connecting and authenticating.
    pub connect_timeout: Option<Duration>,
}

impl std::fmt::Debug for ReplicationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .finish_non_exhaustive()
    }
}

/// A connection string that does not parse. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PostgreSQL connection string: {0}")]
pub struct ConfigError(pub String);

impl ReplicationConfig {
    /// A configuration with libpq's defaults: `localhost:5432`, user and database `postgres`.
    pub fn new() -> ReplicationConfig {
        ReplicationConfig {
            host: Host::Tcp("localhost".into()),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: "postgres".into(),
            application_name: "ebb".into(),
            ssl_mode: SslMode::default(),
            ssl_root_cert: None,
            tls_config: None,
            connect_timeout: Some(Duration::from_secs(30)),
        }
    }

    /// Parses `postgres://user:pass@host:port/db?sslmode=require` or
    /// `host=... port=... user=... password=... dbname=... sslmode=...`.
    pub fn parse(s: &str) -> Result<ReplicationConfig, ConfigError> {
        let s = s.trim();
        let pairs = if let Some(rest) = s
            .strip_prefix("postgresql://")
            .or_else(|| s.strip_prefix("postgres://"))
        {
            parse_url(rest)?
        } else {
            parse_key_values(s)?
        };
        let mut config = ReplicationConfig::new();
        let mut dbname = None;
        for (key, value) in pairs {
            match key.as_str() {
                "host" | "hostaddr" => {
                    config.host = if value.starts_with('/') {
                        Host::Unix(PathBuf::from(value))
                    } else {
                        Host::Tcp(value)
                    };
                }
                "port" => {
                    config.port = value
                        .parse()
                        .map_err(|_| ConfigError(format!("port {value:?} is not a number")))?;
                }
                "user" => config.user = value,
                "password" => config.password = Some(value.into()),
                "dbname" => dbname = Some(value),
                "application_name" => config.application_name = value,
                "sslmode" => {
                    config.ssl_mode = match value.as_str() {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        _ => {
                            return Err(ConfigError(format!(
                                "sslmode {value:?} is not one of disable, prefer, require, verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" => config.ssl_root_cert = Some(PathBuf::from(value)),
                "connect_timeout" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        ConfigError(format!("connect_timeout {value:?} is not a number"))
                    })?;
                    config.connect_timeout = (secs > 0).then(|| Duration::from_secs(secs));
                }
                // Options that do not change how ebb connects.
                "replication" | "options" | "target_session_attrs" | "keepalives" => {}
                other => return Err(ConfigError(format!("unknown option {other:?}"))),
            }
        }
        config.dbname = dbname.unwrap_or_else(|| config.user.clone());
        Ok(config)
    }
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig::new()
    }
}

impl std::str::FromStr for ReplicationConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReplicationConfig::parse(s)
    }
}

fn percent_decode(s: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConfigError("bad percent-encoding in URL".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConfigError("URL is not UTF-8 once decoded".into()))
}

fn parse_url(rest: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".into(), percent_decode(user)?));
            }
            if let Some(p) = password {
                pairs.push(("password".into(), percent_decode(p)?));
            }
            hostport
        }
        None => authority,
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| ConfigError("unclosed [ in URL host".into()))?;
        (h, rest.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !host.is_empty() {
        pairs.push(("host".into(), percent_decode(host)?));
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        pairs.push(("port".into(), p.to_owned()));
    }
    if !path.is_empty() {
        pairs.push(("dbname".into(), percent_decode(path)?));
    }
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("URL parameter {kv:?} has no value")))?;
        pairs.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(pairs)
}

fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConfigError(format!("option {key:?} has no '='")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConfigError(format!("unterminated quote in {key:?}"))),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn parses_urls() {
        let c = ReplicationConfig::parse(
            "postgres://al%40ice:p%3Ass@db.example:6543/app?sslmode=require&application_name=x",
        )
        .unwrap();
        assert_eq!(c.user, "al@ice");
        assert_eq!(c.password.as_ref().unwrap().expose_secret(), "p:ss");
        assert_eq!(c.host, Host::Tcp("db.example".into()));
        assert_eq!(c.port, 6543);
        assert_eq!(c.dbname, "app");
        assert_eq!(c.ssl_mode, SslMode::Require);
        assert_eq!(c.application_name, "x");
        let c = ReplicationConfig::parse("postgresql://[::1]:5433/db").unwrap();
        assert_eq!(c.host, Host::Tcp("::1".into()));
        assert_eq!(c.port, 5433);
        assert!(!format!("{c:?}").contains("p:ss"));
    }

    #[test]
    fn parses_key_values() {
        let c = ReplicationConfig::parse(
            "host=/tmp/sock port=5499 user=bob password='a \\'b' dbname = shop sslmode=disable",
        )
        .unwrap();
        assert_eq!(c.host, Host::Unix("/tmp/sock".into()));
        assert_eq!(c.port, 5499);
        assert_eq!(c.password.as_ref().unwrap().expose_secret(), "a 'b");
        assert_eq!(c.dbname, "shop");
        assert_eq!(c.ssl_mode, SslMode::Disable);
        let c = ReplicationConfig::parse("user=carol").unwrap();
        assert_eq!(c.dbname, "carol");
        assert!(ReplicationConfig::parse("sslmode=maybe").is_err());
        assert!(ReplicationConfig::parse("colour=blue").is_err());
        assert!(ReplicationConfig::parse("port=x").is_err());
    }
}
