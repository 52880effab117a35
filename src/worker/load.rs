//! Reading the worker's config file: TOML, then environment overrides, then typed
//! settings checked field by field. Every error names the file, the line and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::config::{ForwardSpec, HandlerSpec, RouteSpec, Sections, SourceSpec, WorkerConfig};
use super::locate::Locator;
use crate::contract::{set_max_allocation_bytes, ContractCheck, ContractRegistry};
use crate::error::ConfigError;
use crate::pipeline::PipelineConfig;

/// The prefix of environment variables that override settings:
/// `SEAWALL__ROUTES__ORDERS__RETRY__MAX_ATTEMPTS=3` sets `routes.orders.retry.max_attempts`.
pub const ENV_PREFIX: &str = "SEAWALL__";

/// A config file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {}{reason}", field_prefix(.field))]
pub struct ConfigFileError {
    place: String,
    field: String,
    reason: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl ConfigFileError {
    /// The dotted path of the setting at fault, empty for a syntax error.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// `file:line`, `file`, or the environment variable that set the value.
    pub fn place(&self) -> &str {
        &self.place
    }
}

/// Where settings came from, to place an error.
struct Origins<'a> {
    file: String,
    locator: Locator<'a>,
    /// Settings set from the environment: dotted path and variable name.
    from_env: Vec<(String, String)>,
}

impl Origins<'_> {
    fn error(&self, field: &str, reason: impl fmt::Display) -> ConfigFileError {
        let place = match self
            .from_env
            .iter()
            .find(|(path, _)| field == path || field.starts_with(&format!("{path}.")))
        {
            Some((_, var)) => format!("environment {var}"),
            None => {
                let path: Vec<&str> = field.split('.').filter(|s| !s.is_empty()).collect();
                match self.locator.line_of(&path) {
                    Some(line) => format!("{}:{line}", self.file),
                    None => self.file.clone(),
                }
            }
        };
        ConfigFileError {
            place,
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn config(&self, err: ConfigError) -> ConfigFileError {
        self.error(err.field(), err.reason())
    }
}

/// Reads `path` with overrides from this process's environment.
pub fn load(path: &Path) -> Result<WorkerConfig, ConfigFileError> {
    load_with_env(path, std::env::vars())
}

/// Reads `path` with overrides from `env` (name, value pairs; those not starting with
/// [`ENV_PREFIX`] are ignored).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<WorkerConfig, ConfigFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        place: file.clone(),
        field: String::new(),
        reason: format!("cannot read: {e}"),
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &file, &base, env)
}

/// Parses config text; `file` names it in errors and relative paths are taken from
/// `base`.
pub fn parse(
    text: &str,
    file: &str,
    base: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<WorkerConfig, ConfigFileError> {
    let mut origins = Origins {
        file: file.to_owned(),
        locator: Locator::new(text),
        from_env: Vec::new(),
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let place = match e.span() {
            Some(span) => format!("{file}:{}", origins.locator.line_at(span.start)),
            None => file.to_owned(),
        };
        ConfigFileError {
            place,
            field: String::new(),
            reason: e.message().trim().to_owned(),
        }
    })?;
    origins.from_env = apply_env(&mut table, env).map_err(|(var, reason)| ConfigFileError {
        place: format!("environment {var}"),
        field: String::new(),
        reason,
    })?;
    let sections: Sections = typed(&origins, "", toml::Value::Table(table))?;
    let mut routes = BTreeMap::new();
    for (name, table) in sections.routes {
        let route = route(&origins, &name, table, base)?;
        routes.insert(name, route);
    }
    let config = WorkerConfig {
        store: super::config::StoreSection {
            path: resolve(base, &sections.store.path),
        },
        admin: sections.admin,
        contracts: super::config::ContractsSection {
            dir: resolve(base, &sections.contracts.dir),
            ..sections.contracts
        },
        shutdown_deadline: sections.shutdown_deadline,
        routes,
    };
    check_contracts(&origins, &config)?;
    Ok(config)
}

/// Loads the contracts directory when a route names a contract, and checks that every
/// named contract is there: a missing schema file stops start-up, naming the route.
fn check_contracts(origins: &Origins<'_>, config: &WorkerConfig) -> Result<(), ConfigFileError> {
    let with_contract: Vec<_> = config
        .routes
        .values()
        .filter_map(|r| r.contract.as_ref().map(|c| (&r.name, c)))
        .collect();
    if with_contract.is_empty() {
        return Ok(());
    }
    // Before any check is built: the bound can be set once per process, and building a
    // check sets the default when nothing was set.
    let in_force = set_max_allocation_bytes(config.contracts.max_allocation_bytes);
    if in_force != config.contracts.max_allocation_bytes {
        tracing::warn!(
            configured = config.contracts.max_allocation_bytes,
            in_force,
            "contracts.max_allocation_bytes was already set in this process; keeping the first value"
        );
    }
    let registry = ContractRegistry::load(&config.contracts.dir)
        .map_err(|e| origins.error("contracts.dir", e))?;
    let registry = std::sync::Arc::new(registry);
    for (name, spec) in with_contract {
        ContractCheck::new(std::sync::Arc::clone(&registry), spec)
            .map_err(|e| origins.error(&format!("routes.{name}.contract.name"), e))?;
    }
    Ok(())
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Sets `SEAWALL__A__B=value` as `a.b = value`; the value is read as TOML when it parses
/// (`3`, `true`, `["a", "b"]`), else taken as a string. Returns the paths set.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, (String, String)> {
    let mut applied = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err((var, "expected SEAWALL__SECTION__KEY".to_owned()));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let (last, parents) = path
            .split_last()
            .ok_or_else(|| (var.clone(), String::new()))?;
        let mut at = &mut *table;
        for segment in parents {
            let entry = at
                .entry(segment.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(inner) => inner,
                _ => return Err((var, format!("`{segment}` is not a table"))),
            };
        }
        at.insert(last.clone(), value);
        applied.push((path.join("."), var));
    }
    Ok(applied)
}

/// Deserialises `value` into `T`, naming the field at fault under `prefix`.
fn typed<T: DeserializeOwned>(
    origins: &Origins<'_>,
    prefix: &str,
    value: toml::Value,
) -> Result<T, ConfigFileError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let field = match (prefix.is_empty(), inner.as_str()) {
            (_, ".") => prefix.to_owned(),
            (true, _) => inner,
            (false, _) => format!("{prefix}.{inner}"),
        };
        origins.error(&field, e.into_inner().message().trim())
    })
}

fn route(
    origins: &Origins<'_>,
    name: &str,
    mut table: toml::Table,
    base: &Path,
) -> Result<RouteSpec, ConfigFileError> {
    let at = format!("routes.{name}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(origins.error(
            &at,
            "a route name may hold only letters, digits, `-` and `_`",
        ));
    }
    let mut take = |key: &str| {
        table
            .remove(key)
            .ok_or_else(|| origins.error(&at, format!("missing field `{key}`")))
    };
    let source: SourceSpec = typed(origins, &format!("{at}.source"), take("source")?)?;
    let handler: HandlerSpec = typed(origins, &format!("{at}.handler"), take("handler")?)?;
    let contract = match table.remove("contract") {
        Some(value) => Some(typed(origins, &format!("{at}.contract"), value)?),
        None => None,
    };
    let keys_given = (has_key(&table, "ordering"), has_key(&table, "idempotency"));
    let mut pipeline: PipelineConfig = typed(origins, &at, toml::Value::Table(table))?;
    if let SourceSpec::Rabbitmq(rabbit) = &source {
        // RabbitMQ carries keys in headers and message ids, not in a message key.
        if !keys_given.0 {
            pipeline.ordering.key = rabbit.ordering_rule();
        }
        if !keys_given.1 {
            pipeline.idempotency.key = rabbit.idempotency_rule();
        }
    }
    let mut spec = RouteSpec {
        name: name.to_owned(),
        source,
        contract,
        handler,
        pipeline,
    };
    resolve_ca_files(&mut spec, base);
    super::validate::route(&spec).map_err(|e| origins.config(e.under(&at)))?;
    Ok(spec)
}

/// CA files, like every path in the file, are relative to the config file's directory.
fn resolve_ca_files(spec: &mut RouteSpec, base: &Path) {
    let mut files: Vec<&mut Option<std::path::PathBuf>> = Vec::new();
    if let SourceSpec::Rabbitmq(rabbit) = &mut spec.source {
        files.extend(rabbit.tls.as_mut().map(|tls| &mut tls.ca_file));
    }
    match &mut spec.handler {
        HandlerSpec::Http(http) => files.extend(http.tls.as_mut().map(|tls| &mut tls.ca_file)),
        HandlerSpec::Forward(ForwardSpec::Rabbitmq(target)) => {
            files.extend(target.tls.as_mut().map(|tls| &mut tls.ca_file));
        }
        HandlerSpec::Forward(ForwardSpec::Kafka(_)) => {}
    }
    for file in files.into_iter().flatten() {
        *file = resolve(base, file);
    }
}

fn has_key(table: &toml::Table, section: &str) -> bool {
    matches!(table.get(section), Some(toml::Value::Table(t)) if t.contains_key("key"))
}
