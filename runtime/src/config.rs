//! Layered configuration with the `config` crate.
//!
//! Precedence, lowest first — the order Turnstone documents:
//!
//! 1. built-in defaults (`T::default()`),
//! 2. the config file (TOML),
//! 3. environment variables: named bindings (`REDIS_HOST` → `redis.host`) and, with a prefix,
//!    generic `PREFIX__SECTION__KEY` variables,
//! 4. command-line flags, given as `(key, value)` overrides.
//!
//! The environment is passed in as a snapshot, so tests never touch the process environment.
//! Errors name the file (or variable), the key and the expected type.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, FileFormat, Format, Map, Source, Value, ValueKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An environment variable that sets one configuration key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvBinding {
    /// The variable, e.g. `REDIS_HOST`.
    pub var: &'static str,
    /// The dotted key it sets, e.g. `redis.host`.
    pub key: &'static str,
}

/// Loading the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file given explicitly (`--config PATH`) does not exist.
    #[error("config file {0} not found")]
    FileNotFound(PathBuf),
    /// The file exists but cannot be read.
    #[error("config file {path} cannot be read: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A layer could not be read or a value has the wrong type or an unknown name.
    #[error("invalid configuration: {source}{}", file_note(.file.as_deref(), source))]
    Invalid {
        /// What the `config` crate reported (it names the key, and the origin of typed values).
        source: Box<config::ConfigError>,
        /// The config file that was read, if any.
        file: Option<PathBuf>,
    },
}

impl From<config::ConfigError> for ConfigError {
    fn from(source: config::ConfigError) -> Self {
        Self::Invalid {
            source: Box::new(source),
            file: None,
        }
    }
}

/// Names the file when the error does not already say where the value came from (unknown keys
/// and bad enum values are reported without an origin).
fn file_note(file: Option<&Path>, source: &config::ConfigError) -> String {
    let message = source.to_string();
    match file {
        Some(path) if !message.contains(" in ") && !message.contains("environment variable") => {
            format!(" (config file: {})", path.display())
        }
        Some(_) | None => String::new(),
    }
}

/// Builds a configuration of type `T` from its layers.
#[derive(Clone, Debug, Default)]
pub struct ConfigLoader {
    file: Option<(PathBuf, bool)>,
    env: HashMap<String, String>,
    bindings: Vec<EnvBinding>,
    prefix: Option<String>,
    overrides: Vec<(String, String)>,
}

impl ConfigLoader {
    /// A loader with no file, no environment and no overrides: defaults only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `path`; when `required` is false a missing file is skipped (the default path),
    /// when true it is an error (a path the user named).
    pub fn file(mut self, path: impl Into<PathBuf>, required: bool) -> Self {
        self.file = Some((path.into(), required));
        self
    }

    /// The environment snapshot to read (usually `std::env::vars()`).
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// Named variables and the keys they set.
    pub fn bindings(mut self, bindings: &[EnvBinding]) -> Self {
        self.bindings.extend_from_slice(bindings);
        self
    }

    /// Also read `PREFIX__SECTION__KEY` variables (e.g. `TURNSTONE__MODEL__TEMPERATURE`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// A command-line value for `key`; the highest layer.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// Command-line values for several keys.
    pub fn overrides(mut self, values: impl IntoIterator<Item = (String, String)>) -> Self {
        self.overrides.extend(values);
        self
    }

    /// Merges the layers and deserializes `T`.
    pub fn load<T: DeserializeOwned + Serialize + Default>(&self) -> Result<T, ConfigError> {
        let mut builder = Config::builder().add_source(Config::try_from(&T::default())?);
        if let Some((path, required)) = &self.file {
            match std::fs::read_to_string(path) {
                Ok(text) => builder = builder.add_source(TomlFile::new(path, text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !*required => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ConfigError::FileNotFound(path.clone()));
                }
                Err(source) => {
                    return Err(ConfigError::Unreadable {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        builder = builder.add_source(BoundEnv {
            vars: self
                .bindings
                .iter()
                .filter_map(|b| self.env.get(b.var).map(|v| (*b, v.clone())))
                // An empty variable is an unset one: what `${VAR:-}` in a compose file or an
                // `EnvironmentFile=` line without a value gives.
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        });
        if let Some(prefix) = &self.prefix {
            let generic = self
                .env
                .iter()
                .filter(|(k, v)| k.starts_with(&format!("{prefix}__")) && !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, String>>();
            builder = builder.add_source(
                Environment::with_prefix(prefix)
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(generic)),
            );
        }
        for (key, value) in &self.overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let file = self
            .file
            .as_ref()
            .map(|(path, _)| std::path::absolute(path).unwrap_or_else(|_| path.clone()));
        builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|source| ConfigError::Invalid {
                source: Box::new(source),
                file,
            })
    }
}

/// A TOML file read by us, so every value's origin (and every parse error) carries the file's
/// absolute path — the `config` crate's own file source prints paths relative to the working
/// directory.
#[derive(Clone, Debug)]
struct TomlFile {
    uri: String,
    text: String,
}

impl TomlFile {
    fn new(path: &Path, text: String) -> Self {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Self {
            uri: absolute.display().to_string(),
            text,
        }
    }
}

impl Source for TomlFile {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        FileFormat::Toml
            .parse(Some(&self.uri), &self.text)
            .map_err(|cause| config::ConfigError::FileParse {
                uri: Some(self.uri.clone()),
                cause,
            })
    }
}

/// Named environment variables as a config source; values keep the variable name as origin.
#[derive(Clone, Debug)]
struct BoundEnv {
    vars: Vec<(EnvBinding, String)>,
}

impl Source for BoundEnv {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self
            .vars
            .iter()
            .map(|(binding, value)| {
                let origin = format!("environment variable {}", binding.var);
                (
                    binding.key.to_owned(),
                    Value::new(Some(&origin), ValueKind::String(value.clone())),
                )
            })
            .collect())
    }
}
