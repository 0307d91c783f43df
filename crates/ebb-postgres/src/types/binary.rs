//! Parsing PostgreSQL's binary send format of each mapped type (pgoutput `binary = true`
//! and binary `COPY`).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use arrow::datatypes::IntervalMonthDayNano;

use super::text::{ParseError, Result};
use crate::lsn::{PG_EPOCH_UNIX_DAYS, PG_EPOCH_UNIX_MICROS};

use ParseError::Invalid;

fn exact<const N: usize>(s: &[u8]) -> Result<[u8; N]> {
    <[u8; N]>::try_from(s).map_err(|_| Invalid("wrong length"))
}

pub(super) fn bool(s: &[u8]) -> Result<bool> {
    Ok(exact::<1>(s)?[0] != 0)
}

pub(super) fn i16(s: &[u8]) -> Result<i16> {
    Ok(i16::from_be_bytes(exact(s)?))
}

pub(super) fn i32(s: &[u8]) -> Result<i32> {
    Ok(i32::from_be_bytes(exact(s)?))
}

pub(super) fn i64(s: &[u8]) -> Result<i64> {
    Ok(i64::from_be_bytes(exact(s)?))
}

pub(super) fn u32(s: &[u8]) -> Result<u32> {
    Ok(u32::from_be_bytes(exact(s)?))
}

pub(super) fn f32(s: &[u8]) -> Result<f32> {
    Ok(f32::from_be_bytes(exact(s)?))
}

pub(super) fn f64(s: &[u8]) -> Result<f64> {
    Ok(f64::from_be_bytes(exact(s)?))
}

/// Days since 2000-01-01 → days since 1970-01-01 (±infinity kept at the ends).
pub(super) fn date(s: &[u8]) -> Result<i32> {
    let d = i32(s)?;
    Ok(match d {
        i32::MAX | i32::MIN => d,
        _ => d
            .checked_add(PG_EPOCH_UNIX_DAYS)
            .ok_or(ParseError::NotRepresentable("date out of Date32 range"))?,
    })
}

/// Microseconds since 2000-01-01 → since 1970-01-01 (±infinity kept at the ends).
pub(super) fn timestamp(s: &[u8]) -> Result<i64> {
    let t = i64(s)?;
    Ok(match t {
        i64::MAX | i64::MIN => t,
        _ => t
            .checked_add(PG_EPOCH_UNIX_MICROS)
            .ok_or(ParseError::NotRepresentable("timestamp out of range"))?,
    })
}

pub(super) fn interval(s: &[u8]) -> Result<IntervalMonthDayNano> {
    let b: [u8; 16] = exact(s)?;
    let micros = i64::from_be_bytes(b[..8].try_into().map_err(|_| Invalid("wrong length"))?);
    let days = i32::from_be_bytes(b[8..12].try_into().map_err(|_| Invalid("wrong length"))?);
    let months = i32::from_be_bytes(b[12..].try_into().map_err(|_| Invalid("wrong length"))?);
    let nanos = micros
        .checked_mul(1000)
        .ok_or(ParseError::NotRepresentable("interval out of range"))?;
    Ok(IntervalMonthDayNano::new(months, days, nanos))
}

pub(super) fn uuid(s: &[u8]) -> Result<[u8; 16]> {
    exact(s)
}

/// jsonb's binary form: a version byte (1) and the text.
pub(super) fn jsonb(s: &[u8]) -> Result<&[u8]> {
    match s.split_first() {
        Some((1, text)) => Ok(text),
        _ => Err(Invalid("unknown jsonb version")),
    }
}

/// The parts of a binary numeric.
struct Numeric<'a> {
    digits: &'a [u8],
    weight: i16,
    sign: u16,
    dscale: u16,
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

impl<'a> Numeric<'a> {
    fn parse(s: &'a [u8]) -> Result<Numeric<'a>> {
        let header: [u8; 8] = s
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or(Invalid("numeric header too short"))?;
        let ndigits = i16::from_be_bytes([header[0], header[1]]);
        let weight = i16::from_be_bytes([header[2], header[3]]);
        let sign = u16::from_be_bytes([header[4], header[5]]);
        let dscale = u16::from_be_bytes([header[6], header[7]]);
        let ndigits = usize::try_from(ndigits).map_err(|_| Invalid("negative digit count"))?;
        let digits = &s[8..];
        if digits.len() != ndigits * 2 {
            return Err(Invalid("digit count does not match length"));
        }
        if digits
            .chunks_exact(2)
            .any(|d| u16::from_be_bytes([d[0], d[1]]) > 9999)
        {
            return Err(Invalid("numeric digit out of range"));
        }
        if !matches!(
            sign,
            NUMERIC_POS | NUMERIC_NEG | NUMERIC_NAN | NUMERIC_PINF | NUMERIC_NINF
        ) {
            return Err(Invalid("unknown numeric sign"));
        }
        Ok(Numeric {
            digits,
            weight,
            sign,
            dscale,
        })
    }

    fn digit(&self, i: i64) -> i64 {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.digits.get(i * 2..i * 2 + 2))
            .map_or(0, |d| i64::from(u16::from_be_bytes([d[0], d[1]])))
    }
}

/// A binary numeric to the unscaled `i128` of `Decimal128(precision, scale)`.
pub(super) fn decimal(s: &[u8], precision: u8, scale: i8) -> Result<i128> {
    let n = Numeric::parse(s)?;
    match n.sign {
        NUMERIC_NAN => return Err(ParseError::NotRepresentable("NaN has no decimal value")),
        NUMERIC_PINF | NUMERIC_NINF => {
            return Err(ParseError::NotRepresentable(
                "infinity has no decimal value",
            ));
        }
        _ => {}
    }
    let overflow = ParseError::NotRepresentable("more digits than the decimal's precision");
    let mut value: i128 = 0;
    for i in 0..n.digits.len() / 2 {
        let d = n.digit(i64::try_from(i).unwrap_or(i64::MAX));
        if d == 0 {
            continue;
        }
        let i = i32::try_from(i).map_err(|_| overflow)?;
        // d × 10000^(weight − i) × 10^scale
        let exp = 4 * (i32::from(n.weight) - i) + i32::from(scale);
        let term = if exp >= 0 {
            10i128
                .checked_pow(exp.unsigned_abs())
                .and_then(|p| p.checked_mul(i128::from(d)))
                .ok_or(overflow)?
        } else {
            let div = 10i128.checked_pow(exp.unsigned_abs()).unwrap_or(i128::MAX);
            if i128::from(d) % div != 0 {
                return Err(ParseError::NotRepresentable(
                    "more fractional digits than the decimal's scale",
                ));
            }
            i128::from(d) / div
        };
        value = value.checked_add(term).ok_or(overflow)?;
    }
    if value >= 10i128.checked_pow(u32::from(precision)).ok_or(overflow)? {
        return Err(overflow);
    }
    Ok(if n.sign == NUMERIC_NEG { -value } else { value })
}

/// A binary numeric to PostgreSQL's text form (`-12.340`, `NaN`, `Infinity`).
pub(super) fn numeric_text(s: &[u8], out: &mut String) -> Result<()> {
    let n = Numeric::parse(s)?;
    out.clear();
    match n.sign {
        NUMERIC_NAN => {
            out.push_str("NaN");
            return Ok(());
        }
        NUMERIC_PINF => {
            out.push_str("Infinity");
            return Ok(());
        }
        NUMERIC_NINF => {
            out.push_str("-Infinity");
            return Ok(());
        }
        NUMERIC_NEG => out.push('-'),
        _ => {}
    }
    let weight = i64::from(n.weight);
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = n.digit(i);
            if i == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if n.dscale > 0 {
        out.push('.');
        let start = out.len();
        let groups = (i64::from(n.dscale) + 3) / 4;
        for k in 0..groups {
            let idx = weight + 1 + k;
            let d = if idx >= 0 { n.digit(idx) } else { 0 };
            let _ = write!(out, "{d:04}");
        }
        out.truncate(start + usize::from(n.dscale));
    }
    Ok(())
}

/// `inet`/`cidr` binary (family, bits, is_cidr, length, address) → PostgreSQL's text form.
pub(super) fn inet_text(s: &[u8], cidr: bool, out: &mut String) -> Result<()> {
    out.clear();
    let (header, addr) = s
        .split_first_chunk::<4>()
        .ok_or(Invalid("inet header too short"))?;
    let [family, bits, _is_cidr, len] = *header;
    if usize::from(len) != addr.len() {
        return Err(Invalid("inet length does not match"));
    }
    let max_bits = match (family, addr) {
        (2, &[a, b, c, d]) => {
            let _ = write!(out, "{}", Ipv4Addr::new(a, b, c, d));
            32
        }
        (3, addr) if addr.len() == 16 => {
            let octets: [u8; 16] = addr.try_into().map_err(|_| Invalid("bad address"))?;
            let _ = write!(out, "{}", Ipv6Addr::from(octets));
            128
        }
        _ => return Err(Invalid("unknown address family")),
    };
    if bits > max_bits {
        return Err(Invalid("netmask longer than the address"));
    }
    if cidr || bits != max_bits {
        let _ = write!(out, "/{bits}");
    }
    Ok(())
}

/// A one-dimensional binary array: calls `each` with every element's bytes (or `None`).
pub(super) fn array(s: &[u8], mut each: impl FnMut(Option<&[u8]>) -> Result<()>) -> Result<()> {
    fn take4(rest: &mut &[u8]) -> Result<i32> {
        let (v, r) = rest
            .split_first_chunk::<4>()
            .ok_or(Invalid("array too short"))?;
        *rest = r;
        Ok(i32::from_be_bytes(*v))
    }
    let mut rest = s;
    let ndim = take4(&mut rest)?;
    let _has_null = take4(&mut rest)?;
    let _element_oid = take4(&mut rest)?;
    match ndim {
        0 => {
            return if rest.is_empty() {
                Ok(())
            } else {
                Err(Invalid("trailing bytes"))
            };
        }
        1 => {}
        n if n > 1 => return Err(ParseError::MultiDimensional(n)),
        _ => return Err(Invalid("negative dimension count")),
    }
    let len = take4(&mut rest)?;
    let _lower_bound = take4(&mut rest)?;
    let len = usize::try_from(len).map_err(|_| Invalid("negative array length"))?;
    for _ in 0..len {
        let n = take4(&mut rest)?;
        if n == -1 {
            each(None)?;
            continue;
        }
        let n = usize::try_from(n).map_err(|_| Invalid("negative element length"))?;
        let (element, r) = rest
            .split_at_checked(n)
            .ok_or(Invalid("array element runs past the value"))?;
        rest = r;
        each(Some(element))?;
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Invalid("trailing bytes"))
    }
}
