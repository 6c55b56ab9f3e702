//! How the configuration is layered: the shipped defaults, then the file, then
//! `BROKER_<SECTION>_<KEY>` variables.

use std::path::Path;

use super::ConfigError;

pub(super) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Overlays `given` on `base`, table by table, so that a partial file keeps the other defaults.
pub(super) fn merge(base: &mut toml::Table, given: toml::Table) {
    for (key, value) in given {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(given_table)) => {
                merge(base_table, given_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `BROKER_SERVER_HTTP_ADDR=...` sets `server.http_addr`. The value is read as a TOML value
/// when it is one (numbers, booleans, arrays), else as a string. Returns false for a variable
/// whose first word names no section: it is not the broker's.
pub(super) fn apply_override(table: &mut toml::Table, name: &str, value: &str) -> bool {
    let rest = &name["BROKER_".len()..];
    // Variables whose first word is no section belong to others that share the prefix:
    // Kubernetes gives every pod of a namespace BROKER_PORT, BROKER_SERVICE_HOST and
    // BROKER_PORT_8080_TCP_* for a Service named `broker`; test harnesses and deployment
    // scripts have their own. A misspelt key of a real section is still refused, by the
    // unknown-key check.
    let (section, key) = rest.split_once('_').unwrap_or((rest, ""));
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    let Some(toml::Value::Table(section_table)) = table.get_mut(&section) else {
        return false;
    };
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    // Keys that are strings, or optional and so absent from the defaults (all of those are
    // strings: addresses, URLs, paths, names), keep the raw text even if it looks like a number.
    let parsed = match section_table.get(&key) {
        None | Some(toml::Value::String(_)) => toml::Value::String(value.to_owned()),
        Some(_) => parsed,
    };
    section_table.insert(key, parsed);
    true
}

pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
