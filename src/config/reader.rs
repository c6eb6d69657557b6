//! A small schema walker over a parsed TOML table that records every problem
//! instead of stopping at the first one, so `check-config` can report them all.
//!
//! Each getter marks its key as known; `finish` reports the keys nobody asked
//! for, because a typo such as `polcy = "public"` must never silently open a
//! paywall.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::{Table, Value};

use super::units::{parse_duration, parse_size};

/// One problem in the config, tied to the dotted key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path such as `server.listen` or `routes[2].prefix`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Collects errors across the whole compile.
#[derive(Debug, Default)]
pub(super) struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Reads one table (a `[section]` or one `[[routes]]` entry).
pub(super) struct Section<'a> {
    path: String,
    table: Option<&'a Table>,
    seen: BTreeSet<&'a str>,
}

impl<'a> Section<'a> {
    /// `table` is `None` when the section is absent: every getter then yields its default.
    pub(super) fn new(path: impl Into<String>, table: Option<&'a Table>) -> Self {
        Section {
            path: path.into(),
            table,
            seen: BTreeSet::new(),
        }
    }

    /// Opens `[name]` from the root table, reporting a non-table value.
    pub(super) fn from_root(root: &'a Table, name: &str, errors: &mut Errors) -> Self {
        let table = match root.get(name) {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(_) => {
                errors.push(name, "must be a table ([section])");
                None
            }
        };
        Section::new(name, table)
    }

    pub(super) fn is_present(&self) -> bool {
        self.table.is_some()
    }

    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{}", self.path, key)
    }

    fn raw(&mut self, key: &'a str) -> Option<&'a Value> {
        self.seen.insert(key);
        self.table.and_then(|t| t.get(key))
    }

    /// True when the key is present in the file (whatever its value).
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.contains_key(key))
    }

    pub(super) fn string(&mut self, key: &'a str, errors: &mut Errors) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                errors.push(
                    self.key(key),
                    format!("must be a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(super) fn bool(&mut self, key: &'a str, errors: &mut Errors) -> Option<bool> {
        match self.raw(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                errors.push(
                    self.key(key),
                    format!("must be true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(super) fn integer(&mut self, key: &'a str, errors: &mut Errors) -> Option<i64> {
        match self.raw(key)? {
            Value::Integer(i) => Some(*i),
            other => {
                errors.push(
                    self.key(key),
                    format!("must be an integer, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(super) fn string_list(&mut self, key: &'a str, errors: &mut Errors) -> Option<Vec<String>> {
        match self.raw(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => errors.push(
                            format!("{}[{i}]", self.key(key)),
                            format!("must be a string, found {}", other.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                errors.push(
                    self.key(key),
                    format!("must be a list of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A nested table (`[section.key]`); `None` when absent, and an error when
    /// the key holds something else.
    pub(super) fn table(&mut self, key: &'a str, errors: &mut Errors) -> Option<&'a Table> {
        match self.raw(key)? {
            Value::Table(t) => Some(t),
            other => {
                errors.push(
                    self.key(key),
                    format!(
                        "must be a table ([{}]), found {}",
                        self.key(key),
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    /// A duration string; `default` when absent, `None` (and an error) when invalid.
    pub(super) fn duration(
        &mut self,
        key: &'a str,
        default: Duration,
        errors: &mut Errors,
    ) -> Option<Duration> {
        match self.string(key, errors) {
            None if self.has(key) => None,
            None => Some(default),
            Some(text) => match parse_duration(&text) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(self.key(key), e);
                    None
                }
            },
        }
    }

    /// A byte size string (an integer is accepted as bytes).
    pub(super) fn size(&mut self, key: &'a str, default: u64, errors: &mut Errors) -> Option<u64> {
        match self.raw(key) {
            None => Some(default),
            Some(Value::Integer(i)) if *i >= 0 => Some(*i as u64),
            Some(Value::String(text)) => match parse_size(text) {
                Ok(n) => Some(n),
                Err(e) => {
                    errors.push(self.key(key), e);
                    None
                }
            },
            Some(other) => {
                errors.push(
                    self.key(key),
                    format!("must be a size like \"10MiB\", found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Reports every key of the table that no getter asked for, naming the
    /// closest known key when the unknown one looks like a typo of it.
    pub(super) fn finish(self, errors: &mut Errors) {
        if let Some(table) = self.table {
            for key in table.keys() {
                if !self.seen.contains(key.as_str()) {
                    errors.push(
                        format!("{}.{}", self.path, key),
                        unknown("unknown key", key, self.seen.iter().copied()),
                    );
                }
            }
        }
    }
}

/// `what`, followed by "did you mean `x`?" when a known key is close to `key`.
pub(super) fn unknown<'k>(
    what: &str,
    key: &str,
    known: impl IntoIterator<Item = &'k str>,
) -> String {
    match closest(key, known) {
        Some(near) => format!("{what}; did you mean `{near}`?"),
        None => what.to_string(),
    }
}

/// The known key nearest to `key` by edit distance, when it is near enough to
/// be the likely intent: one edit for keys under six characters, two for
/// longer ones (so `ttl` never suggests `url`). Ties go to the first in `known`.
pub(super) fn closest<'k>(key: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let limit = (key.chars().count() / 3).clamp(1, 2);
    let mut best: Option<(usize, &'k str)> = None;
    for candidate in known {
        let distance = edit_distance(key, candidate);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, k)| k)
}

/// Edits (insert, delete, substitute, or swap two neighbours) turning `a` into
/// `b`; a swap counts once because `listne` is one slip, not two.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    // Three rows of the optimal-string-alignment table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}
