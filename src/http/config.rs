//! Settings of the HTTP delivery handler.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;

use crate::error::ConfigError;

/// Where and how each message is delivered: one HTTP request per handler attempt.
///
/// `Debug` shows the values of secret-looking static headers (`authorization`, `cookie`,
/// names containing `token`, `key`, `secret` or `password`) as `***`, and the URL without
/// its user info.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The endpoint, `http://` or `https://` (required).
    pub url: String,
    /// The request method (default `POST`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Static request headers sent with every request (default none). They win over
    /// every header taken from the message.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// When set, every message header `name` is sent as `<prefix><name>`; headers whose
    /// name or value is not valid in HTTP are skipped. Default: message headers are not
    /// sent.
    #[serde(default)]
    pub header_prefix: Option<String>,
    /// The request's `content-type`. Default: the message's `content-type` header if
    /// any, else `application/octet-stream`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Limit for one request, from connecting to the end of the response (default 10s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Limit for establishing a connection (default 2s).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host (default 32).
    #[serde(default = "default_max_idle_per_host")]
    pub max_idle_per_host: usize,
    /// Extra trust for `https://` endpoints (default none: the system roots only).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Longest `Retry-After` honoured; a longer one is clamped to this (default 5m).
    #[serde(default = "default_max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
}

/// TLS settings for `https://` endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of extra root CA certificates (a private or test CA), trusted in
    /// addition to the system roots (default none).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_method() -> String {
    "POST".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_max_idle_per_host() -> usize {
    32
}

fn default_max_retry_after() -> Duration {
    Duration::from_secs(300)
}

impl HttpConfig {
    /// A config for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: default_method(),
            headers: BTreeMap::new(),
            header_prefix: None,
            content_type: None,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            max_idle_per_host: default_max_idle_per_host(),
            tls: None,
            max_retry_after: default_max_retry_after(),
        }
    }

    /// Checks every setting, naming the first bad one (`http.url`, `http.headers.<name>`…).
    /// Reads `tls.ca_file` to check it exists and holds a certificate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.parsed_url()?;
        self.parsed_method()?;
        for (name, value) in &self.headers {
            parse_header(name, value)?;
        }
        if let Some(prefix) = &self.header_prefix {
            // Any header name is the prefix plus a token, so the prefix must be a token.
            if !prefix.is_empty() && HeaderName::from_bytes(prefix.as_bytes()).is_err() {
                return Err(ConfigError::new(
                    "http.header_prefix",
                    format!("{prefix:?} is not valid in a header name"),
                ));
            }
        }
        if let Some(content_type) = &self.content_type {
            HeaderValue::from_str(content_type)
                .map_err(|_| ConfigError::new("http.content_type", "not a valid header value"))?;
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("http.timeout", "must be more than zero"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "http.connect_timeout",
                "must be more than zero",
            ));
        }
        if let Some(path) = self.tls.as_ref().and_then(|tls| tls.ca_file.as_ref()) {
            read_ca_file(path)?;
        }
        Ok(())
    }

    /// The URL, checked to be `http`/`https` with a host.
    pub(crate) fn parsed_url(&self) -> Result<Url, ConfigError> {
        let url = Url::parse(&self.url)
            .map_err(|err| ConfigError::new("http.url", format!("not a URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                "http.url",
                format!("scheme {:?} is not http or https", url.scheme()),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new("http.url", "has no host"));
        }
        Ok(url)
    }

    pub(crate) fn parsed_method(&self) -> Result<Method, ConfigError> {
        Method::from_bytes(self.method.as_bytes()).map_err(|_| {
            ConfigError::new("http.method", format!("{:?} is not a method", self.method))
        })
    }
}

/// A static header, checked. The error never quotes the value: it may be a secret.
pub(crate) fn parse_header(
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let field = format!("http.headers.{name}");
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::new(field.clone(), "not a valid header name"))?;
    let mut header_value = HeaderValue::from_str(value)
        .map_err(|_| ConfigError::new(field, "value is not a valid header value"))?;
    header_value.set_sensitive(is_secret_name(name));
    Ok((header_name, header_value))
}

/// The certificates of a PEM file, each checked to parse.
pub(crate) fn read_ca_file(path: &PathBuf) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    const FIELD: &str = "http.tls.ca_file";
    let pem = std::fs::read(path)
        .map_err(|err| ConfigError::new(FIELD, format!("cannot read {}: {err}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|err| ConfigError::new(FIELD, format!("{} is not PEM: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            FIELD,
            format!("{} holds no certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// Whether a header's value should never be shown.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || ["token", "key", "secret", "password", "auth"]
        .iter()
        .any(|word| name.contains(word))
}

/// `url` without user info, for logs and errors. Unparseable input is not echoed.
pub(crate) fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            // Both setters only fail for URLs that cannot have user info at all.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// Header values with secrets masked.
struct RedactedHeaders<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_secret_name(name) {
                    "***"
                } else {
                    value.as_str()
                };
                (name, shown)
            }))
            .finish()
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &redact_url(&self.url))
            .field("method", &self.method)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("header_prefix", &self.header_prefix)
            .field("content_type", &self.content_type)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_idle_per_host", &self.max_idle_per_host)
            .field("tls", &self.tls)
            .field("max_retry_after", &self.max_retry_after)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_everything_but_the_url() {
        let config: HttpConfig = toml::from_str(r#"url = "http://127.0.0.1:8080/x""#).unwrap();
        assert_eq!(config, HttpConfig::new("http://127.0.0.1:8080/x"));
        assert_eq!(config.method, "POST");
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.max_idle_per_host, 32);
        assert_eq!(config.max_retry_after, Duration::from_secs(300));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn unknown_fields_and_a_missing_url_are_refused() {
        assert!(toml::from_str::<HttpConfig>(
            r#"url = "http://h/"
retries = 3"#
        )
        .is_err());
        assert!(toml::from_str::<HttpConfig>(r#"method = "PUT""#).is_err());
        let full: HttpConfig = toml::from_str(
            r#"url = "https://h/x"
method = "PUT"
headers = { authorization = "Bearer s3cret" }
header_prefix = "x-msg-"
content_type = "application/json"
timeout = "3s"
connect_timeout = "500ms"
max_idle_per_host = 4
tls = { ca_file = "/tmp/ca.pem" }
max_retry_after = "1m""#,
        )
        .unwrap();
        assert_eq!(full.timeout, Duration::from_secs(3));
        assert_eq!(full.connect_timeout, Duration::from_millis(500));
        assert_eq!(full.headers["authorization"], "Bearer s3cret");
    }

    fn field_of(config: &HttpConfig) -> String {
        config.validate().unwrap_err().field().to_owned()
    }

    #[test]
    fn validate_names_the_bad_field() {
        let ok = HttpConfig::new("http://127.0.0.1:1/");
        let with = |f: &dyn Fn(&mut HttpConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            field_of(&c)
        };
        assert_eq!(with(&|c| c.url = "ftp://h/".into()), "http.url");
        assert_eq!(with(&|c| c.url = "no url".into()), "http.url");
        assert_eq!(with(&|c| c.method = "PO ST".into()), "http.method");
        let bad_name = with(&|c| {
            c.headers.insert("bad name".into(), "v".into());
        });
        assert_eq!(bad_name, "http.headers.bad name");
        let bad_value = with(&|c| {
            c.headers.insert("x-token".into(), "line\nbreak".into());
        });
        assert_eq!(bad_value, "http.headers.x-token");
        assert_eq!(
            with(&|c| c.header_prefix = Some("x msg".into())),
            "http.header_prefix"
        );
        assert_eq!(
            with(&|c| c.content_type = Some("a\u{7f}".into())),
            "http.content_type"
        );
        assert_eq!(with(&|c| c.timeout = Duration::ZERO), "http.timeout");
        assert_eq!(
            with(&|c| c.connect_timeout = Duration::ZERO),
            "http.connect_timeout"
        );
        let missing_ca = with(&|c| {
            c.tls = Some(TlsConfig {
                ca_file: Some("/nonexistent/ca.pem".into()),
            })
        });
        assert_eq!(missing_ca, "http.tls.ca_file");
    }

    #[test]
    fn validate_error_never_quotes_a_header_value() {
        let mut config = HttpConfig::new("http://h/");
        config.headers.insert("x-api-key".into(), "s3cret\n".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn debug_masks_secret_headers_and_user_info() {
        let mut config = HttpConfig::new("https://bob:pa55@example.test/in");
        config
            .headers
            .insert("Authorization".into(), "Bearer s3cret".into());
        config.headers.insert("x-tenant".into(), "acme".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pa55"),
            "{shown}"
        );
        assert!(shown.contains("***") && shown.contains("acme"), "{shown}");
    }

    #[test]
    fn secret_names_are_recognised() {
        for name in [
            "Authorization",
            "cookie",
            "X-Api-Key",
            "x-auth-token",
            "client_secret",
            "db-password",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["accept", "x-tenant", "content-type"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn urls_lose_their_user_info() {
        assert_eq!(
            redact_url("https://bob:pw@example.test/a?b=1"),
            "https://example.test/a?b=1"
        );
        assert_eq!(redact_url("not a url"), "<invalid URL>");
    }
}
