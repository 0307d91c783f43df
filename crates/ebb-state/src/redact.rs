//! Redaction of sample payloads before they are stored in a run log.
//!
//! A run log may keep a sample record ("the row HubSpot refused looked like this"); it is
//! read by people and API clients who must not see credentials or personal data. Before a
//! payload is stored, [`redact`] walks it:
//!
//! - **Secret-like fields**: a field whose name, lower-cased with `-`, `_`, `.` and spaces
//!   removed, contains `password`, `passwd`, `pwd`, `secret`, `token`, `apikey`,
//!   `accesskey`, `privatekey`, `authorization`, `credential`, `cookie`, `session`, `ssn`,
//!   `creditcard`, `cardnumber` or `cvv` has its value (whatever its type, nested objects
//!   included) replaced by `"[REDACTED]"`.
//! - **E-mail addresses**: every address inside any string, under any field name, is masked
//!   partially: the first character of the local part and the domain stay, the rest becomes
//!   `***` (`jane.doe@example.com` → `j***@example.com`), so a reader can still tell
//!   which customer's domain a record belongs to.
//! - Everything else is kept; arrays and objects are walked recursively.
//!
//! Redaction happens once, on the way in: the original is never stored.

use serde_json::{Map, Value};

/// What a secret-like field's value becomes.
pub const REDACTED: &str = "[REDACTED]";

const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "credential",
    "cookie",
    "session",
    "ssn",
    "creditcard",
    "cardnumber",
    "cvv",
];

/// A copy of `value` with secret-like fields replaced and e-mail addresses masked.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(redact_object(map)),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) => match mask_email(s) {
            Some(masked) => Value::String(masked),
            None => value.clone(),
        },
        other => other.clone(),
    }
}

fn redact_object(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(key, value)| {
            let value = if is_secret_name(key) {
                Value::String(REDACTED.into())
            } else {
                redact(value)
            };
            (key.clone(), value)
        })
        .collect()
}

/// Whether a field of this name holds a credential.
pub fn is_secret_name(name: &str) -> bool {
    let normalized: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_WORDS.iter().any(|w| normalized.contains(w))
}

/// Masks every e-mail address inside `s` (`write to jane.doe@example.com` → `write to
/// j***@example.com`); `None` if `s` holds none.
pub fn mask_email(s: &str) -> Option<String> {
    fn local_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || "._%+-'".contains(c)
    }
    fn domain_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '.' || c == '-'
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut found = false;
    let mut i = 0;
    // `copied`: chars[..copied] are already in `out`.
    let mut copied = 0;
    while i < chars.len() {
        if chars[i] != '@' {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > copied && local_char(chars[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < chars.len() && domain_char(chars[end]) {
            end += 1;
        }
        // A sentence may end right after the address.
        while end > i + 1 && chars[end - 1] == '.' {
            end -= 1;
        }
        let domain: String = chars[i + 1..end].iter().collect();
        let valid = start < i
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.starts_with('-')
            && !domain.contains("..");
        if valid {
            out.extend(&chars[copied..start]);
            out.push(chars[start]);
            out.push_str("***@");
            out.push_str(&domain);
            copied = end;
            found = true;
        }
        i = end.max(i + 1);
    }
    if !found {
        return None;
    }
    out.extend(&chars[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_replaced_and_emails_masked() {
        let payload = json!({
            "id": 42,
            "email": "jane.doe@example.com",
            "api_key": "sk_live_123",
            "Authorization": "Bearer abc",
            "nested": {"refresh-token": {"value": "x"}, "note": "call bob@corp.io"},
            "contacts": [{"e": "a@b.co"}, {"password": 123}],
            "name": "Jane",
        });
        assert_eq!(
            redact(&payload),
            json!({
                "id": 42,
                "email": "j***@example.com",
                "api_key": "[REDACTED]",
                "Authorization": "[REDACTED]",
                "nested": {"refresh-token": "[REDACTED]", "note": "call b***@corp.io"},
                "contacts": [{"e": "a***@b.co"}, {"password": "[REDACTED]"}],
                "name": "Jane",
            })
        );
    }

    #[test]
    fn secret_names_and_embedded_emails() {
        assert!(is_secret_name("x-api-key"));
        assert!(is_secret_name("clientSecret"));
        assert!(!is_secret_name("first_name"));
        assert_eq!(mask_email("not an email"), None);
        assert_eq!(mask_email("a@localhost"), None);
        assert_eq!(mask_email("@example.com"), None);
        assert_eq!(
            mask_email("to x.y@ex-ample.com, cc z@q.org.").as_deref(),
            Some("to x***@ex-ample.com, cc z***@q.org.")
        );
    }
}
