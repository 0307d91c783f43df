//! Parsing PostgreSQL's text output format of each mapped type.
//!
//! Every function takes the bytes of one value and returns the Arrow-ready value, or a
//! [`ParseError`] with a reason that does not contain the value.

use std::borrow::Cow;

use arrow::datatypes::IntervalMonthDayNano;

use super::datetime::{days_from_civil, days_in_month};

/// Why a value did not convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParseError {
    /// Not a valid encoding of the type.
    Invalid(&'static str),
    /// Valid, but the Arrow type cannot hold it.
    NotRepresentable(&'static str),
    /// An array with this many dimensions.
    MultiDimensional(i32),
}

pub(super) type Result<T> = std::result::Result<T, ParseError>;

use ParseError::Invalid;

pub(super) fn utf8(s: &[u8]) -> Result<&str> {
    std::str::from_utf8(s).map_err(|_| Invalid("not UTF-8"))
}

pub(super) fn bool(s: &[u8]) -> Result<bool> {
    match s {
        b"t" | b"true" => Ok(true),
        b"f" | b"false" => Ok(false),
        _ => Err(Invalid("expected t or f")),
    }
}

pub(super) fn int<T: std::str::FromStr>(s: &[u8]) -> Result<T> {
    utf8(s)?
        .parse()
        .map_err(|_| Invalid("not an integer in range"))
}

pub(super) fn float<T: std::str::FromStr>(s: &[u8]) -> Result<T> {
    // Rust accepts PostgreSQL's `NaN`, `Infinity` and `-Infinity` (case-insensitively).
    utf8(s)?
        .parse()
        .map_err(|_| Invalid("not a floating-point number"))
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// A decimal number to the unscaled `i128` of `Decimal128(precision, scale)`.
pub(super) fn decimal(s: &[u8], precision: u8, scale: i8) -> Result<i128> {
    match s {
        b"NaN" => return Err(ParseError::NotRepresentable("NaN has no decimal value")),
        b"Infinity" | b"-Infinity" => {
            return Err(ParseError::NotRepresentable(
                "infinity has no decimal value",
            ));
        }
        _ => {}
    }
    let (negative, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    let (int_part, frac_part) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &[][..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(Invalid("no digits"));
    }
    if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
        return Err(Invalid("not a decimal number"));
    }
    let overflow = ParseError::NotRepresentable("more digits than the decimal's precision");
    // Digits that the scale keeps; anything after them must be zero.
    let scale_i = i32::from(scale);
    let (kept_int, dropped_int): (&[u8], &[u8]) = if scale_i >= 0 {
        (int_part, &[])
    } else {
        let drop = usize::try_from(-scale_i)
            .unwrap_or(usize::MAX)
            .min(int_part.len());
        int_part.split_at(int_part.len() - drop)
    };
    let frac_keep = usize::try_from(scale_i.max(0)).unwrap_or(0);
    let (kept_frac, dropped_frac) = frac_part.split_at(frac_part.len().min(frac_keep));
    if dropped_int.iter().chain(dropped_frac).any(|&d| d != b'0') {
        return Err(ParseError::NotRepresentable(
            "more fractional digits than the decimal's scale",
        ));
    }
    let mut value: i128 = 0;
    for &d in kept_int.iter().chain(kept_frac) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(d - b'0')))
            .ok_or(overflow)?;
    }
    // Pad the fraction to the scale, and a negative scale drops whole digits we accounted for
    // by shortening `kept_int` (which may have been shorter than the scale: value 0).
    let pad = u32::try_from(frac_keep - kept_frac.len()).unwrap_or(u32::MAX);
    value = value
        .checked_mul(pow10(pad).ok_or(overflow)?)
        .ok_or(overflow)?;
    if value >= pow10(u32::from(precision)).ok_or(overflow)? {
        return Err(overflow);
    }
    Ok(if negative { -value } else { value })
}

/// `YYYY-MM-DD[ BC]` (DateStyle ISO), `infinity`, `-infinity` → days since 1970-01-01.
pub(super) fn date(s: &[u8]) -> Result<i32> {
    match s {
        b"infinity" => return Ok(i32::MAX),
        b"-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s);
    let mut c = Cursor(s);
    let days = c.date(bc)?;
    c.end()?;
    i32::try_from(days).map_err(|_| ParseError::NotRepresentable("date out of Date32 range"))
}

/// `HH:MM:SS[.ffffff]` → microseconds since midnight.
pub(super) fn time(s: &[u8]) -> Result<i64> {
    let mut c = Cursor(s);
    let t = c.time()?;
    c.end()?;
    Ok(t)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` → microseconds since the Unix epoch.
pub(super) fn timestamp(s: &[u8]) -> Result<i64> {
    match s {
        b"infinity" => return Ok(i64::MAX),
        b"-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s);
    let mut c = Cursor(s);
    let micros = c.date_time(bc)?;
    c.end()?;
    Ok(micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]][ BC]` → microseconds since the Unix epoch, UTC.
pub(super) fn timestamptz(s: &[u8]) -> Result<i64> {
    match s {
        b"infinity" => return Ok(i64::MAX),
        b"-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s);
    let mut c = Cursor(s);
    let local = c.date_time(bc)?;
    let sign = match c.next() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(Invalid("missing UTC offset")),
    };
    let mut offset = i64::from(c.digits_n(2)?) * 3600;
    if c.eat(b':') {
        offset += i64::from(c.digits_n(2)?) * 60;
        if c.eat(b':') {
            offset += i64::from(c.digits_n(2)?);
        }
    }
    c.end()?;
    local
        .checked_sub(sign * offset * 1_000_000)
        .ok_or(ParseError::NotRepresentable("timestamp out of range"))
}

fn strip_bc(s: &[u8]) -> (&[u8], bool) {
    match s.strip_suffix(b" BC") {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.0 = &self.0[1..];
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, reason: &'static str) -> Result<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(Invalid(reason))
        }
    }

    fn end(&self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid("unexpected characters at the end"))
        }
    }

    /// One or more digits (at most 18).
    fn digits(&mut self) -> Result<i64> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 18 {
            return Err(Invalid("expected a number"));
        }
        let mut v: i64 = 0;
        for &d in &self.0[..n] {
            v = v * 10 + i64::from(d - b'0');
        }
        self.0 = &self.0[n..];
        Ok(v)
    }

    /// Exactly `n` digits.
    fn digits_n(&mut self, n: usize) -> Result<u32> {
        match self.0.get(..n) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => {
                let v = d.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
                self.0 = &self.0[n..];
                Ok(v)
            }
            _ => Err(Invalid("expected two digits")),
        }
    }

    /// `.ffffff` (up to 6 digits), as microseconds; nothing if there is no dot.
    fn fraction_micros(&mut self) -> Result<i64> {
        if !self.eat(b'.') {
            return Ok(0);
        }
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return Err(Invalid("expected 1 to 6 fractional digits"));
        }
        let mut v: i64 = 0;
        for i in 0..6 {
            v = v * 10
                + self
                    .0
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |d| i64::from(d - b'0'));
        }
        self.0 = &self.0[n..];
        Ok(v)
    }

    /// `YYYY-MM-DD` → days since 1970-01-01.
    fn date(&mut self, bc: bool) -> Result<i64> {
        let year = self.digits()?;
        self.expect(b'-', "expected '-' after the year")?;
        let month = self.digits_n(2)?;
        self.expect(b'-', "expected '-' after the month")?;
        let day = self.digits_n(2)?;
        if year == 0 {
            return Err(Invalid("year 0 does not exist"));
        }
        let year = if bc { 1 - year } else { year };
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(Invalid("no such day"));
        }
        Ok(days_from_civil(year, month, day))
    }

    /// `HH:MM:SS[.ffffff]` → microseconds.
    fn time(&mut self) -> Result<i64> {
        let h = self.digits_n(2)?;
        self.expect(b':', "expected ':' after the hour")?;
        let m = self.digits_n(2)?;
        self.expect(b':', "expected ':' after the minute")?;
        let s = self.digits_n(2)?;
        let frac = self.fraction_micros()?;
        if h > 24 || m > 59 || s > 60 {
            return Err(Invalid("time of day out of range"));
        }
        Ok((i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)) * 1_000_000 + frac)
    }

    fn date_time(&mut self, bc: bool) -> Result<i64> {
        let days = self.date(bc)?;
        self.expect(b' ', "expected a space between date and time")?;
        let t = self.time()?;
        days.checked_mul(MICROS_PER_DAY)
            .and_then(|d| d.checked_add(t))
            .ok_or(ParseError::NotRepresentable("timestamp out of range"))
    }
}

/// The text of an interval in IntervalStyle `postgres`, `postgres_verbose` or `iso_8601`.
pub(super) fn interval(s: &[u8]) -> Result<IntervalMonthDayNano> {
    let s = utf8(s)?;
    let mut acc = IntervalAcc::default();
    if let Some(iso) = s.strip_prefix('P') {
        iso_interval(iso, &mut acc)?;
    } else {
        postgres_interval(s, &mut acc)?;
    }
    acc.finish()
}

#[derive(Default)]
struct IntervalAcc {
    months: i64,
    days: i64,
    micros: i64,
}

impl IntervalAcc {
    fn finish(self) -> Result<IntervalMonthDayNano> {
        let range = ParseError::NotRepresentable("interval out of range");
        Ok(IntervalMonthDayNano::new(
            i32::try_from(self.months).map_err(|_| range)?,
            i32::try_from(self.days).map_err(|_| range)?,
            self.micros.checked_mul(1000).ok_or(range)?,
        ))
    }
}

fn add(a: &mut i64, v: i64, factor: i64) -> Result<()> {
    *a = v
        .checked_mul(factor)
        .and_then(|v| a.checked_add(v))
        .ok_or(ParseError::NotRepresentable("interval out of range"))?;
    Ok(())
}

/// A signed decimal with up to 6 fractional digits, as (whole, micro-fraction) both signed.
fn signed_seconds(s: &str) -> Result<i64> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut c = Cursor(digits.as_bytes());
    let whole = c.digits()?;
    let frac = c.fraction_micros()?;
    c.end()?;
    let v = whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or(ParseError::NotRepresentable("interval out of range"))?;
    Ok(if neg { -v } else { v })
}

fn signed_int(s: &str) -> Result<i64> {
    s.parse().map_err(|_| Invalid("expected a whole number"))
}

/// `1 year 2 mons -3 days +04:05:06.5`, or `@ 1 year 2 mons 3 days 4 hours 5 mins 6.5 secs ago`.
fn postgres_interval(s: &str, acc: &mut IntervalAcc) -> Result<()> {
    let mut tokens = s.split(' ').filter(|t| !t.is_empty()).peekable();
    let mut ago = false;
    let mut any = false;
    while let Some(token) = tokens.next() {
        any = true;
        if token == "@" {
            continue;
        }
        if token == "ago" {
            ago = true;
            continue;
        }
        if token.contains(':') {
            let (neg, hms) = match token.as_bytes()[0] {
                b'-' => (true, &token[1..]),
                b'+' => (false, &token[1..]),
                _ => (false, token),
            };
            let mut parts = hms.splitn(3, ':');
            let h: i64 = parts
                .next()
                .and_then(|h| h.parse().ok())
                .ok_or(Invalid("bad hours"))?;
            let m: i64 = parts
                .next()
                .and_then(|m| m.parse().ok())
                .ok_or(Invalid("bad minutes"))?;
            let sec = match parts.next() {
                Some(sec) => signed_seconds(sec)?,
                None => 0,
            };
            let mut v = 0;
            add(&mut v, h, 3_600_000_000)?;
            add(&mut v, m, 60_000_000)?;
            add(&mut v, sec, 1)?;
            add(&mut acc.micros, if neg { -v } else { v }, 1)?;
            continue;
        }
        let unit = tokens.next().ok_or(Invalid("number without a unit"))?;
        match unit.trim_end_matches('s') {
            "year" => add(&mut acc.months, signed_int(token)?, 12)?,
            "mon" => add(&mut acc.months, signed_int(token)?, 1)?,
            "day" => add(&mut acc.days, signed_int(token)?, 1)?,
            "hour" => add(&mut acc.micros, signed_int(token)?, 3_600_000_000)?,
            "min" => add(&mut acc.micros, signed_int(token)?, 60_000_000)?,
            "sec" => add(&mut acc.micros, signed_seconds(token)?, 1)?,
            _ => return Err(Invalid("unknown interval unit")),
        }
    }
    if !any {
        return Err(Invalid("empty interval"));
    }
    if ago {
        acc.months = -acc.months;
        acc.days = -acc.days;
        acc.micros = -acc.micros;
    }
    Ok(())
}

/// `1Y2M3DT4H5M6.5S` (after the `P`), components possibly negative.
fn iso_interval(s: &str, acc: &mut IntervalAcc) -> Result<()> {
    let mut in_time = false;
    let mut rest = s;
    if rest.is_empty() {
        return Err(Invalid("empty interval"));
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or(Invalid("number without a unit"))?;
        let (num, unit) = (&rest[..end], rest.as_bytes()[end]);
        rest = &rest[end + 1..];
        match (in_time, unit) {
            (false, b'Y') => add(&mut acc.months, signed_int(num)?, 12)?,
            (false, b'M') => add(&mut acc.months, signed_int(num)?, 1)?,
            (false, b'W') => add(&mut acc.days, signed_int(num)?, 7)?,
            (false, b'D') => add(&mut acc.days, signed_int(num)?, 1)?,
            (true, b'H') => add(&mut acc.micros, signed_int(num)?, 3_600_000_000)?,
            (true, b'M') => add(&mut acc.micros, signed_int(num)?, 60_000_000)?,
            (true, b'S') => add(&mut acc.micros, signed_seconds(num)?, 1)?,
            _ => return Err(Invalid("unknown interval unit")),
        }
    }
    Ok(())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hyphens optional, braces accepted).
pub(super) fn uuid(s: &[u8]) -> Result<[u8; 16]> {
    let s = s
        .strip_prefix(b"{")
        .and_then(|s| s.strip_suffix(b"}"))
        .unwrap_or(s);
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut hex = s.iter().filter(|&&b| b != b'-');
    while let Some(&hi) = hex.next() {
        let lo = *hex.next().ok_or(Invalid("odd number of hex digits"))?;
        let slot = out.get_mut(n).ok_or(Invalid("more than 32 hex digits"))?;
        *slot = (hex_val(hi)? << 4) | hex_val(lo)?;
        n += 1;
    }
    if n != 16 {
        return Err(Invalid("fewer than 32 hex digits"));
    }
    Ok(out)
}

fn hex_val(b: u8) -> Result<u8> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(Invalid("not a hex digit")),
    }
}

/// `\x0a0b…` (hex) or the escape format, into `out` (cleared first).
pub(super) fn bytea(s: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    if let Some(hex) = s.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return Err(Invalid("odd number of hex digits"));
        }
        out.reserve(hex.len() / 2);
        for pair in hex.chunks_exact(2) {
            out.push((hex_val(pair[0])? << 4) | hex_val(pair[1])?);
        }
        return Ok(());
    }
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
        } else if s.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = s.get(i + 1..i + 4).ok_or(Invalid("bad escape"))?;
            if !oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                return Err(Invalid("bad escape"));
            }
            let v = oct.iter().fold(0u32, |v, &d| v * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(v).map_err(|_| Invalid("bad escape"))?);
            i += 4;
        }
    }
    Ok(())
}

/// Walks the elements of a one-dimensional array literal `{a,"b c",NULL}` (an optional
/// `[lower:upper]=` prefix is skipped), calling `each` with every element's unescaped text.
pub(super) fn array(s: &[u8], mut each: impl FnMut(Option<&[u8]>) -> Result<()>) -> Result<()> {
    let mut s = s;
    if s.first() == Some(&b'[') {
        let eq = s
            .iter()
            .position(|&b| b == b'=')
            .ok_or(Invalid("bad array dimensions"))?;
        let dims = s[..eq].iter().filter(|&&b| b == b'[').count();
        if dims > 1 {
            return Err(ParseError::MultiDimensional(
                i32::try_from(dims).unwrap_or(i32::MAX),
            ));
        }
        s = &s[eq + 1..];
    }
    let body = s
        .strip_prefix(b"{")
        .and_then(|s| s.strip_suffix(b"}"))
        .ok_or(Invalid("array must be enclosed in braces"))?;
    if body.first() == Some(&b'{') {
        let dims = s.iter().take_while(|&&b| b == b'{').count();
        return Err(ParseError::MultiDimensional(
            i32::try_from(dims).unwrap_or(i32::MAX),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let mut i = 0;
    let mut scratch = Vec::new();
    loop {
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let element: Option<Cow<'_, [u8]>>;
        if body.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            let mut escaped = false;
            loop {
                match body.get(i) {
                    None => return Err(Invalid("unterminated quoted array element")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(_) => i += 1,
                }
            }
            let raw = body.get(start..i).ok_or(Invalid("bad escape"))?;
            i += 1;
            element = Some(if escaped {
                unescape(raw, &mut scratch);
                Cow::Borrowed(&scratch[..])
            } else {
                Cow::Borrowed(raw)
            });
        } else {
            let start = i;
            let mut escaped = false;
            while let Some(&b) = body.get(i) {
                match b {
                    b',' => break,
                    b'\\' => {
                        escaped = true;
                        i += 2;
                    }
                    b'"' | b'{' | b'}' => return Err(Invalid("unexpected character in array")),
                    _ => i += 1,
                }
            }
            let raw = body.get(start..i).ok_or(Invalid("bad escape"))?;
            let raw = raw.trim_ascii_end();
            if raw.is_empty() {
                return Err(Invalid("empty unquoted array element"));
            }
            element = if !escaped && raw.eq_ignore_ascii_case(b"NULL") {
                None
            } else if escaped {
                unescape(raw, &mut scratch);
                Some(Cow::Borrowed(&scratch[..]))
            } else {
                Some(Cow::Borrowed(raw))
            };
        }
        each(element.as_deref())?;
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match body.get(i) {
            None => return Ok(()),
            Some(b',') => i += 1,
            Some(_) => return Err(Invalid("expected ',' between array elements")),
        }
    }
}

fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(b);
        }
    }
}
