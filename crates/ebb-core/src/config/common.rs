//! Small value types shared by several config files.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::Spanned;

/// A YAML mapping from names to values that keeps its order and where each name was written
/// (`destinations: {crm: {...}, hooks: {...}}`).
#[derive(Debug, Clone)]
pub struct NamedMap<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        NamedMap(Vec::new())
    }
}

impl<T> NamedMap<T> {
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k.value == name).map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.0.iter().map(|(k, _)| k.value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Spanned<String>, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = NamedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NamedMap<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    out.push((key, map.next_value()?));
                }
                Ok(NamedMap(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NamedMap<T>, E> {
                Ok(NamedMap(Vec::new()))
            }
        }
        deserializer.deserialize_map(V(PhantomData))
    }
}

/// A primary key: one column (`primary_key: id`) or several (`primary_key: [org, id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumns(pub Vec<String>);

impl<'de> Deserialize<'de> for KeyColumns {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyColumns;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column name or a list of column names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyColumns, E> {
                Ok(KeyColumns(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyColumns, A::Error> {
                let mut cols = Vec::new();
                while let Some(c) = seq.next_element::<String>()? {
                    cols.push(c);
                }
                if cols.is_empty() {
                    return Err(de::Error::custom("a primary key needs at least one column"));
                }
                Ok(KeyColumns(cols))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A duration written the way people write them: `500ms`, `30s`, `15m`, `2h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("\"{s}\" has no unit; write e.g. `30s`, `15m`, `2h`"))?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("\"{s}\" is not a duration; write e.g. `30s`, `15m`, `2h`"))?;
        let secs = match unit.trim() {
            "ms" => return Ok(Duration(std::time::Duration::from_millis(n))),
            "s" | "sec" | "second" | "seconds" => n,
            "m" | "min" | "minute" | "minutes" => n * 60,
            "h" | "hour" | "hours" => n * 3600,
            "d" | "day" | "days" => n * 86_400,
            other => {
                return Err(format!(
                    "unknown unit \"{other}\" in \"{s}\"; use ms, s, m, h or d"
                ));
            }
        };
        Ok(Duration(std::time::Duration::from_secs(secs)))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            "15m".parse::<Duration>().unwrap().0,
            std::time::Duration::from_secs(900)
        );
        assert_eq!(
            "500ms".parse::<Duration>().unwrap().0,
            std::time::Duration::from_millis(500)
        );
        assert!("15".parse::<Duration>().unwrap_err().contains("no unit"));
        assert!(
            "3w".parse::<Duration>()
                .unwrap_err()
                .contains("unknown unit")
        );
    }
}
