//! Normalizers: each attribute kind has one canonical text form, so that rules compare
//! meaning rather than spelling. A value that normalizes to nothing (blank, `n/a`, a phone
//! with too few digits) is missing, and missing values never match anything.

use ebb_core::config::identity::{AttributeConfig, AttributeKind};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// How one attribute is normalized, compiled from its config.
#[derive(Debug, Clone)]
pub struct Normalizer {
    kind: AttributeKind,
    gmail_canonical: bool,
    /// The country calling code for phones written without one (`1` for `US`).
    calling_code: Option<&'static str>,
}

impl Normalizer {
    pub fn new(config: &AttributeConfig) -> Result<Normalizer, String> {
        let calling_code = match &config.default_region {
            None => None,
            Some(region) => Some(calling_code(region).ok_or_else(|| {
                format!(
                    "default_region \"{region}\" is not a region ebb knows; use an ISO 3166 alpha-2 code such as US, GB, DE"
                )
            })?),
        };
        Ok(Normalizer {
            kind: config.kind,
            gmail_canonical: config.gmail_canonical,
            calling_code,
        })
    }

    pub fn kind(&self) -> AttributeKind {
        self.kind
    }

    /// The canonical form of `raw`, or `None` when it carries no identity.
    pub fn normalize(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        if is_placeholder(raw) {
            return None;
        }
        let out = match self.kind {
            AttributeKind::Email => email(raw, self.gmail_canonical),
            AttributeKind::Phone => phone(raw, self.calling_code),
            AttributeKind::Name => name(raw),
            AttributeKind::Address => address(raw),
            AttributeKind::Date => date(raw),
            AttributeKind::Id => Some(raw.split_whitespace().collect::<String>()),
            AttributeKind::Text => Some(words(&fold(raw))),
        }?;
        (!out.is_empty()).then_some(out)
    }
}

fn is_placeholder(v: &str) -> bool {
    v.is_empty()
        || matches!(
            v.to_ascii_lowercase().as_str(),
            "null" | "none" | "n/a" | "-" | "unknown" | "nan"
        )
}

/// Trimmed, lowercased; with `gmail_canonical`, Gmail's ignored dots and `+tags` removed.
pub fn email(raw: &str, gmail_canonical: bool) -> Option<String> {
    let lower = raw
        .trim_matches(|c: char| c.is_whitespace() || c == '<' || c == '>')
        .to_lowercase();
    let lower = lower.strip_prefix("mailto:").unwrap_or(&lower);
    let (local, domain) = lower.rsplit_once('@')?;
    if local.is_empty() || !domain.contains('.') || domain.contains(char::is_whitespace) {
        return None;
    }
    if gmail_canonical && (domain == "gmail.com" || domain == "googlemail.com") {
        let local = local.split('+').next().unwrap_or(local).replace('.', "");
        return Some(format!("{local}@gmail.com"));
    }
    Some(format!("{local}@{domain}"))
}

/// E.164 (`+14155550149`). `+` or `00` give the country; otherwise `calling_code` is
/// assumed, with a national trunk `0` dropped. Extensions (`x12`, `ext. 12`) are ignored.
pub fn phone(raw: &str, calling_code: Option<&str>) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    let main = ["ext", "x", "#"]
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .map_or(lower.as_str(), |at| &lower[..at]);
    let international = main.trim_start().starts_with('+');
    let mut digits: String = main.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return None;
    }
    if international {
        return Some(format!("+{digits}"));
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return Some(format!("+{rest}"));
    }
    match calling_code {
        Some("1") => {
            // North America: 10 digits, or 11 with the leading 1.
            if digits.len() == 11 && digits.starts_with('1') {
                Some(format!("+{digits}"))
            } else if digits.len() == 10 {
                Some(format!("+1{digits}"))
            } else {
                Some(digits)
            }
        }
        Some(code) => {
            if let Some(rest) = digits.strip_prefix('0') {
                digits = rest.to_string();
            } else if digits.starts_with(code) && digits.len() > 10 {
                return Some(format!("+{digits}"));
            }
            Some(format!("+{code}{digits}"))
        }
        None => Some(digits),
    }
}

/// Unicode-folded (`Zoë` → `zoe`), lowercase, punctuation as spaces, `Last, First` turned
/// around, honorifics and suffixes dropped.
pub fn name(raw: &str) -> Option<String> {
    let folded = fold(raw);
    let ordered = match folded.split_once(',') {
        Some((last, first)) if !first.contains(',') && !first.trim().is_empty() => {
            format!("{first} {last}")
        }
        _ => folded,
    };
    let cleaned: String = ordered
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let parts: Vec<&str> = cleaned
        .split_whitespace()
        .filter(|w| {
            !matches!(
                *w,
                "mr" | "mrs" | "ms" | "miss" | "dr" | "prof" | "jr" | "sr" | "ii" | "iii"
            )
        })
        .collect();
    Some(parts.join(" "))
}

/// Folded, lowercase, punctuation removed, common street words abbreviated.
pub fn address(raw: &str) -> Option<String> {
    let folded = fold(raw);
    let cleaned: String = folded
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let parts: Vec<&str> = cleaned
        .split_whitespace()
        .map(|w| match w {
            "street" => "st",
            "road" => "rd",
            "avenue" => "ave",
            "boulevard" => "blvd",
            "drive" => "dr",
            "lane" => "ln",
            "court" => "ct",
            "place" => "pl",
            "crescent" => "cres",
            "terrace" => "tce",
            "highway" => "hwy",
            "apartment" | "apt" | "unit" => "unit",
            "suite" => "ste",
            "north" => "n",
            "south" => "s",
            "east" => "e",
            "west" => "w",
            other => other,
        })
        .collect();
    Some(parts.join(" "))
}

/// `YYYY-MM-DD` from `YYYY-MM-DD`, `YYYYMMDD`, `YYYY/MM/DD`, `DD.MM.YYYY`, `MM/DD/YYYY` (or
/// `DD/MM/YYYY` when the first number is above 12), with a time part ignored. A value that
/// is no valid date keeps its digits, so that a typo stays comparable.
pub fn date(raw: &str) -> Option<String> {
    let day_part = raw.split(['T', ' ']).next().unwrap_or(raw);
    let nums: Vec<&str> = day_part
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let parsed = match nums.as_slice() {
        [one] if one.len() == 8 => Some((&one[..4], &one[4..6], &one[6..])),
        [y, m, d] if y.len() == 4 => Some((*y, *m, *d)),
        [a, b, y] if y.len() == 4 && day_part.contains('.') => Some((*y, *b, *a)),
        [a, b, y] if y.len() == 4 => {
            if a.parse::<u32>().is_ok_and(|n| n > 12) {
                Some((*y, *b, *a))
            } else {
                Some((*y, *a, *b))
            }
        }
        _ => None,
    };
    if let Some((y, m, d)) = parsed
        && let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>())
        && (1..=12).contains(&m)
        && (1..=days_in_month(y, m)).contains(&d)
    {
        return Some(format!("{y:04}-{m:02}-{d:02}"));
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 6).then_some(digits)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Lowercase, accents removed (NFKD without combining marks), and the letters that do not
/// decompose spelled out (`ß` → `ss`, `ø` → `o`, `ł` → `l`).
pub fn fold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match c {
            'ß' => out.push_str("ss"),
            'æ' | 'Æ' => out.push_str("ae"),
            'œ' | 'Œ' => out.push_str("oe"),
            'ø' | 'Ø' => out.push('o'),
            'ł' | 'Ł' => out.push('l'),
            'đ' | 'Đ' | 'ð' | 'Ð' => out.push('d'),
            'þ' | 'Þ' => out.push_str("th"),
            'ı' => out.push('i'),
            '\u{2019}' | '\u{2018}' | '`' => out.push('\''),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The country calling code of an ISO 3166 alpha-2 region.
fn calling_code(region: &str) -> Option<&'static str> {
    let code = match region.to_ascii_uppercase().as_str() {
        "US" | "CA" | "PR" => "1",
        "GB" | "UK" => "44",
        "DE" => "49",
        "FR" => "33",
        "ES" => "34",
        "IT" => "39",
        "NL" => "31",
        "BE" => "32",
        "CH" => "41",
        "AT" => "43",
        "IE" => "353",
        "PT" => "351",
        "SE" => "46",
        "NO" => "47",
        "DK" => "45",
        "FI" => "358",
        "PL" => "48",
        "AU" => "61",
        "NZ" => "64",
        "JP" => "81",
        "KR" => "82",
        "CN" => "86",
        "IN" => "91",
        "SG" => "65",
        "HK" => "852",
        "BR" => "55",
        "MX" => "52",
        "AR" => "54",
        "ZA" => "27",
        "IL" => "972",
        "AE" => "971",
        _ => return None,
    };
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased_and_gmail_only_when_asked() {
        assert_eq!(
            email("  Ann.Lee@Acme.COM ", false).unwrap(),
            "ann.lee@acme.com"
        );
        assert_eq!(
            email("Ann.Lee+news@gmail.com", false).unwrap(),
            "ann.lee+news@gmail.com"
        );
        assert_eq!(
            email("Ann.Lee+news@googlemail.com", true).unwrap(),
            "annlee@gmail.com"
        );
        assert_eq!(email("a.b+x@acme.com", true).unwrap(), "a.b+x@acme.com");
        assert_eq!(email("not an email", false), None);
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(phone("(415) 555-0149", Some("1")).unwrap(), "+14155550149");
        assert_eq!(
            phone("415.555.0149 x12", Some("1")).unwrap(),
            "+14155550149"
        );
        assert_eq!(phone("1-415-555-0149", Some("1")).unwrap(), "+14155550149");
        assert_eq!(phone("+65 6555 6971", Some("1")).unwrap(), "+6565556971");
        assert_eq!(
            phone("0044 20 7946 0958", Some("1")).unwrap(),
            "+442079460958"
        );
        assert_eq!(phone("020 7946 0958", Some("44")).unwrap(), "+442079460958");
        assert_eq!(phone("555", Some("1")), None);
    }

    #[test]
    fn names_are_folded_and_reordered() {
        assert_eq!(name("  Zoë  MÜLLER ").unwrap(), "zoe muller");
        assert_eq!(name("Müller, Zoë").unwrap(), "zoe muller");
        assert_eq!(name("Dr. Samuel O'Neill Jr.").unwrap(), "samuel o neill");
        assert_eq!(name("Łukasz Øster").unwrap(), "lukasz oster");
    }

    #[test]
    fn dates_and_addresses() {
        assert_eq!(date("19850312").unwrap(), "1985-03-12");
        assert_eq!(date("1985-03-12T10:00:00Z").unwrap(), "1985-03-12");
        assert_eq!(date("03/12/1985").unwrap(), "1985-03-12");
        assert_eq!(date("25/12/1985").unwrap(), "1985-12-25");
        assert_eq!(date("19851312").unwrap(), "19851312");
        assert_eq!(
            address("12 Main Street, Apt. 4").unwrap(),
            "12 main st unit 4"
        );
    }

    #[test]
    fn placeholders_are_missing() {
        let n = Normalizer {
            kind: AttributeKind::Text,
            gmail_canonical: false,
            calling_code: None,
        };
        assert_eq!(n.normalize(" N/A "), None);
        assert_eq!(n.normalize(""), None);
        assert_eq!(n.normalize(" Acme  Corp ").unwrap(), "acme corp");
    }
}
