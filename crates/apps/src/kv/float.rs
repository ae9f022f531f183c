//! Redis's floating-point number handling, reproduced exactly and deterministically.
//!
//! Redis 7.0 reads numbers with the C library (`strtod`, `strtold`) and writes them
//! with `printf`: sorted-set scores are doubles written as `%.17g` (`ZSCORE` of `1.1`
//! is `1.1000000000000001`), and `INCRBYFLOAT`/`HINCRBYFLOAT` compute in x87 80-bit
//! `long double` and write `%.17Lf` without trailing zeros (`0.1` + `0.2` is `0.3`).
//! Host floating point cannot give those answers everywhere (no `long double` in
//! Rust, and the platform's libc is not the replicas' to pick), so this module parses
//! into an exact big-integer value, rounds it once to the target format (53-bit
//! doubles, 64-bit-mantissa extended) with round-half-even as glibc does, and
//! prints exact decimal expansions. Everything is integer arithmetic: every replica
//! computes the same bits.

use std::cmp::Ordering;

/// A non-negative big integer, little-endian 32-bit limbs, no high zero limbs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }
    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }
    fn bits(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(top) => (self.0.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros()),
        }
    }
    fn bit(&self, i: u64) -> bool {
        let limb = (i / 32) as usize;
        limb < self.0.len() && (self.0[limb] >> (i % 32)) & 1 == 1
    }
    /// Whether any bit below `i` is set.
    fn any_below(&self, i: u64) -> bool {
        let limb = (i / 32) as usize;
        if self.0[..limb.min(self.0.len())].iter().any(|&l| l != 0) {
            return true;
        }
        limb < self.0.len() && self.0[limb] & ((1u32 << (i % 32)) - 1) != 0
    }
    fn mul_small(&mut self, m: u32, add: u32) {
        let mut carry = u64::from(add);
        for l in &mut self.0 {
            let v = u64::from(*l) * u64::from(m) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }
    fn pow10(n: u64) -> Big {
        let mut b = Big::from_u64(1);
        let mut left = n;
        while left > 0 {
            let step = left.min(9);
            b.mul_small(10u32.pow(step as u32), 0);
            left -= step;
        }
        b
    }
    fn mul_pow10(&mut self, n: u64) {
        let mut left = n;
        while left > 0 {
            let step = left.min(9);
            self.mul_small(10u32.pow(step as u32), 0);
            left -= step;
        }
    }
    fn shl(&self, n: u64) -> Big {
        if self.is_zero() {
            return self.clone();
        }
        let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
        let mut out = vec![0u32; limbs];
        let mut carry = 0u32;
        for &l in &self.0 {
            out.push(if bits == 0 { l } else { (l << bits) | carry });
            carry = if bits == 0 { 0 } else { l >> (32 - bits) };
        }
        out.push(carry);
        let mut b = Big(out);
        b.trim();
        b
    }
    fn shr(&self, n: u64) -> Big {
        let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
        if limbs >= self.0.len() {
            return Big(Vec::new());
        }
        let src = &self.0[limbs..];
        let mut out = Vec::with_capacity(src.len());
        for (i, &l) in src.iter().enumerate() {
            let hi = src.get(i + 1).copied().unwrap_or(0);
            out.push(if bits == 0 {
                l
            } else {
                (l >> bits) | (hi << (32 - bits))
            });
        }
        let mut b = Big(out);
        b.trim();
        b
    }
    fn cmp(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }
    /// `self -= o` (`o <= self`).
    fn sub(&mut self, o: &Big) {
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let v = i64::from(self.0[i]) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(v < 0);
            self.0[i] = v.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }
    /// The low 64 bits.
    fn low_u64(&self) -> u64 {
        u64::from(self.0.first().copied().unwrap_or(0))
            | (u64::from(self.0.get(1).copied().unwrap_or(0)) << 32)
    }
    /// `(self / d, self % d)` for a quotient of at most 128 bits.
    fn div_rem(&self, d: &Big) -> (u128, Big) {
        let mut rem = self.clone();
        let mut q = 0u128;
        if rem.cmp(d) == Ordering::Less {
            return (0, rem);
        }
        let top = rem.bits() - d.bits();
        for i in (0..=top.min(127)).rev() {
            let t = d.shl(i);
            if rem.cmp(&t) != Ordering::Less {
                rem.sub(&t);
                q |= 1 << i;
            }
        }
        (q, rem)
    }
    /// `(self / d, self % d)` for a small divisor.
    fn div_small(&self, d: u32) -> (Big, u32) {
        let mut out = vec![0u32; self.0.len()];
        let mut rem = 0u64;
        for i in (0..self.0.len()).rev() {
            let v = (rem << 32) | u64::from(self.0[i]);
            out[i] = (v / u64::from(d)) as u32;
            rem = v % u64::from(d);
        }
        let mut b = Big(out);
        b.trim();
        (b, rem as u32)
    }
    fn to_decimal(&self) -> String {
        let mut chunks = Vec::new();
        let mut n = self.clone();
        while !n.is_zero() {
            let (q, r) = n.div_small(1_000_000_000);
            chunks.push(r);
            n = q;
        }
        let mut s = chunks
            .pop()
            .map_or_else(|| "0".to_string(), |c| c.to_string());
        for c in chunks.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

/// A binary floating-point format: `precision` mantissa bits, values `m * 2^e`
/// with `m < 2^precision` and `min_exp <= e <= max_exp` (subnormals included).
#[derive(Clone, Copy, Debug)]
struct Format {
    precision: u64,
    min_exp: i64,
    max_exp: i64,
}

/// IEEE double.
const DOUBLE: Format = Format {
    precision: 53,
    min_exp: -1074,
    max_exp: 1023 - 52,
};
/// x87 80-bit extended (`long double` on x86-64).
const EXTENDED: Format = Format {
    precision: 64,
    min_exp: -16445,
    max_exp: 16383 - 63,
};

/// A value of some [`Format`]: `(-1)^neg * m * 2^e`, or an infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    neg: bool,
    /// `None`: infinite.
    finite: Option<(u64, i64)>,
}

/// How a rounding ended, for `strtod`'s `ERANGE` cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range {
    Ok,
    /// A finite input rounded to infinity.
    Overflow,
    /// A non-zero input rounded to zero.
    Underflow,
}

/// Round `n * 2^e` (plus a sticky bit: something non-zero below `n`) to `f`.
fn round(neg: bool, n: &Big, e: i64, sticky: bool, f: Format) -> (LongDouble, Range) {
    if n.is_zero() {
        let r = if sticky { Range::Underflow } else { Range::Ok };
        return (
            LongDouble {
                neg,
                finite: Some((0, f.min_exp)),
            },
            r,
        );
    }
    let bits = n.bits() as i64;
    let shift = (bits - f.precision as i64).max(f.min_exp - e);
    let (mut m, mut e) = if shift > 0 {
        let s = shift as u64;
        let kept = n.shr(s).low_u64();
        let half = n.bit(s - 1);
        let rest = sticky || n.any_below(s - 1);
        let up = half && (rest || kept & 1 == 1);
        (u128::from(kept) + u128::from(up), e + shift)
    } else {
        (u128::from(n.shl((-shift) as u64).low_u64()), e + shift)
    };
    if m == 1u128 << f.precision {
        m >>= 1;
        e += 1;
    }
    if e > f.max_exp {
        return (LongDouble { neg, finite: None }, Range::Overflow);
    }
    let range = if m == 0 { Range::Underflow } else { Range::Ok };
    (
        LongDouble {
            neg,
            finite: Some((m as u64, e)),
        },
        range,
    )
}

/// What `strtod` recognised at the start of a string.
enum Scanned {
    Inf,
    Nan,
    /// `digits * base^exp` (base 10, or 2 for hex floats with `digits` in hex).
    Number {
        digits: Vec<u8>,
        hex: bool,
        exp: i64,
    },
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Parse a decimal exponent (`[+-]digits`) at `s[i..]`: its value (saturated) and
/// the end, or `None` if there are no digits.
fn exponent(s: &[u8], mut i: usize) -> Option<(i64, usize)> {
    let neg = match s.get(i) {
        Some(b'+') => {
            i += 1;
            false
        }
        Some(b'-') => {
            i += 1;
            true
        }
        _ => false,
    };
    let start = i;
    let mut v: i64 = 0;
    while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
        v = (v * 10 + i64::from(d - b'0')).min(1 << 40);
        i += 1;
    }
    (i > start).then_some((if neg { -v } else { v }, i))
}

/// `strtod`'s syntax (after any leading white space, which the caller handles):
/// the sign, what was recognised, and how many bytes it took; `None` if nothing.
fn scan(s: &[u8]) -> Option<(bool, Scanned, usize)> {
    let mut i = 0;
    let neg = match s.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let rest = &s[i..];
    let starts = |w: &[u8]| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w);
    if starts(b"infinity") {
        return Some((neg, Scanned::Inf, i + 8));
    }
    if starts(b"inf") {
        return Some((neg, Scanned::Inf, i + 3));
    }
    if starts(b"nan") {
        let mut end = i + 3;
        if s.get(end) == Some(&b'(') {
            let close = s[end + 1..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
            if let Some(p) = close.filter(|p| s[end + 1 + p] == b')') {
                end += p + 2;
            }
        }
        return Some((neg, Scanned::Nan, end));
    }
    let hex = starts(b"0x")
        && rest.get(2).is_some_and(|c| {
            c.is_ascii_hexdigit() || (*c == b'.' && rest.get(3).is_some_and(u8::is_ascii_hexdigit))
        });
    let (is_digit, mut j): (fn(&u8) -> bool, usize) = if hex {
        (u8::is_ascii_hexdigit, i + 2)
    } else {
        (u8::is_ascii_digit, i)
    };
    let mut digits = Vec::new();
    let mut frac = 0i64;
    while let Some(&c) = s.get(j).filter(|c| is_digit(c)) {
        digits.push(c);
        j += 1;
    }
    if s.get(j) == Some(&b'.') {
        let mut k = j + 1;
        while let Some(&c) = s.get(k).filter(|c| is_digit(c)) {
            digits.push(c);
            frac += 1;
            k += 1;
        }
        if !digits.is_empty() {
            j = k;
        }
    }
    if digits.is_empty() {
        return None;
    }
    let (marker, scale) = if hex { (b'p', 4) } else { (b'e', 1) };
    let mut exp = -frac * scale;
    if s.get(j).is_some_and(|c| c.eq_ignore_ascii_case(&marker)) {
        if let Some((e, end)) = exponent(s, j + 1) {
            exp += e;
            j = end;
        }
    }
    Some((neg, Scanned::Number { digits, hex, exp }, j))
}

/// The most significant decimal digits kept exactly; any further non-zero digit
/// only matters as a sticky bit (enough for both formats' halfway cases within
/// Redis's input limits: 5 KiB for `long double`, and 800 > 767 digits for doubles).
const MAX_DIGITS: usize = 6000;

/// Round what [`scan`] recognised to `f`.
fn convert(neg: bool, sc: &Scanned, f: Format) -> Option<(LongDouble, Range)> {
    let Scanned::Number { digits, hex, exp } = sc else {
        return match sc {
            Scanned::Inf => Some((LongDouble { neg, finite: None }, Range::Ok)),
            _ => None,
        };
    };
    let first = digits.iter().position(|&d| d != b'0');
    let Some(first) = first else {
        return Some(round(neg, &Big(Vec::new()), 0, false, f));
    };
    let mut digits = &digits[first..];
    let value = |c: u8| (c as char).to_digit(16).unwrap_or(0);
    let mut exp = *exp;
    if *hex {
        let mut n = Big(Vec::new());
        let mut sticky = false;
        // 4 bits per digit; beyond 40 digits (160 bits) only the sticky bit counts
        for (i, &c) in digits.iter().enumerate() {
            if i < 40 {
                n.mul_small(16, value(c));
            } else {
                sticky |= c != b'0';
                exp += 4;
            }
        }
        let e = exp.clamp(-(1 << 20), 1 << 20);
        return Some(round(neg, &n, e, sticky, f));
    }
    let mut sticky = false;
    if digits.len() > MAX_DIGITS {
        sticky = digits[MAX_DIGITS..].iter().any(|&c| c != b'0');
        exp += (digits.len() - MAX_DIGITS) as i64;
        digits = &digits[..MAX_DIGITS];
    }
    // magnitude ~ 10^(exp + len): far outside both formats, decide at once
    let magnitude = exp + digits.len() as i64;
    if magnitude > 5000 {
        return Some((LongDouble { neg, finite: None }, Range::Overflow));
    }
    if magnitude < -5000 {
        return Some(round(neg, &Big(Vec::new()), 0, true, f));
    }
    let mut n = Big(Vec::new());
    for &c in digits {
        n.mul_small(10, value(c));
    }
    if sticky {
        // a non-zero tail: one more digit 1 stands for it
        n.mul_small(10, 1);
        exp -= 1;
    }
    if exp >= 0 {
        n.mul_pow10(exp as u64);
        return Some(round(neg, &n, 0, false, f));
    }
    let den = Big::pow10((-exp) as u64);
    let s = (den.bits() as i64 - n.bits() as i64 + f.precision as i64 + 3).max(0);
    let (q, rem) = n.shl(s as u64).div_rem(&den);
    let q = Big(vec![
        q as u32,
        (q >> 32) as u32,
        (q >> 64) as u32,
        (q >> 96) as u32,
    ]);
    let mut q = q;
    q.trim();
    Some(round(neg, &q, -s, !rem.is_zero(), f))
}

/// Redis's `string2d`: the whole string is a number `strtod` reads, without leading
/// white space, not NaN, not out of range (a finite number too large or a non-zero
/// one too small for a double; `inf` itself is fine).
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    if s.first().is_none_or(|&c| is_space(c)) {
        return None;
    }
    let (neg, sc, used) = scan(s)?;
    if used != s.len() {
        return None;
    }
    let (v, range) = convert(neg, &sc, DOUBLE)?;
    (range == Range::Ok).then(|| to_f64(v))
}

/// A score bound of `ZRANGEBYSCORE`/`ZCOUNT` as Redis's `zslParseRange` reads it
/// (`strtod` of the whole string or up to a NUL byte, leading white space allowed,
/// an empty string is 0, out of range saturates, NaN refused).
pub fn parse_range_f64(s: &[u8]) -> Option<f64> {
    let s = &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())];
    let start = s.iter().position(|&c| !is_space(c)).unwrap_or(s.len());
    let body = &s[start..];
    let Some((neg, sc, used)) = scan(body) else {
        // nothing recognised: strtod returns 0 and consumes nothing
        return s.is_empty().then_some(0.0);
    };
    if used != body.len() {
        return None;
    }
    convert(neg, &sc, DOUBLE).map(|(v, _)| to_f64(v))
}

/// Redis's `string2ld`: as [`parse_f64`] but into `long double`, and at most 5119
/// bytes long.
pub fn parse_long_double(s: &[u8]) -> Option<LongDouble> {
    if s.is_empty() || s.len() >= 5 * 1024 || is_space(s[0]) {
        return None;
    }
    let (neg, sc, used) = scan(s)?;
    if used != s.len() {
        return None;
    }
    let (v, range) = convert(neg, &sc, EXTENDED)?;
    (range == Range::Ok).then_some(v)
}

fn to_f64(v: LongDouble) -> f64 {
    let mag = match v.finite {
        None => f64::INFINITY,
        Some((m, e)) => {
            // exact: m < 2^53 and e within the double range
            if e >= 0 {
                m as f64 * 2f64.powi(e as i32)
            } else if e >= -1022 {
                m as f64 / 2f64.powi((-e) as i32)
            } else {
                m as f64 / 2f64.powi(1022) / 2f64.powi((-e - 1022) as i32)
            }
        }
    };
    if v.neg {
        -mag
    } else {
        mag
    }
}

/// The exact value of a finite double as `(neg, m, e)`: `m * 2^e`.
fn decompose(x: f64) -> (bool, u64, i64) {
    let bits = x.to_bits();
    let neg = bits >> 63 == 1;
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1 << 52) - 1);
    if exp == 0 {
        (neg, frac, -1074)
    } else {
        (neg, frac | (1 << 52), exp - 1075)
    }
}

/// `round(m * 2^e * 10^k)` (half to even) as a big integer.
fn scaled(m: u64, e: i64, k: i64) -> Big {
    let mut num = Big::from_u64(m);
    let mut den = Big::from_u64(1);
    if k >= 0 {
        num.mul_pow10(k as u64);
    } else {
        den = Big::pow10((-k) as u64);
    }
    if e >= 0 {
        num = num.shl(e as u64);
    } else {
        den = den.shl((-e) as u64);
    }
    // quotient and remainder; the quotient may be large (e.g. %.17Lf of 1e4000)
    let (q, rem) = if den.0 == [1] {
        (num, Big(Vec::new()))
    } else if den.bits() > num.bits() + 1 {
        (Big(Vec::new()), num)
    } else if num.bits() - den.bits() < 120 {
        let (q, r) = num.div_rem(&den);
        let mut q = Big(vec![
            q as u32,
            (q >> 32) as u32,
            (q >> 64) as u32,
            (q >> 96) as u32,
        ]);
        q.trim();
        (q, r)
    } else {
        // only a power of two divides a large quotient here (k >= 0)
        let s = (-e) as u64;
        let q = num.shr(s);
        let r = Big((0..num.0.len())
            .map(|i| {
                let lo = (i as u64) * 32;
                if lo + 32 <= s {
                    num.0[i]
                } else if lo < s {
                    num.0[i] & ((1u32 << (s - lo)) - 1)
                } else {
                    0
                }
            })
            .collect());
        let mut r = r;
        r.trim();
        (q, r)
    };
    let twice = rem.shl(1);
    let up = match twice.cmp(&den) {
        Ordering::Greater => true,
        Ordering::Equal => q.0.first().is_some_and(|l| l & 1 == 1),
        Ordering::Less => false,
    };
    let mut q = q;
    if up {
        q.mul_small(1, 1);
    }
    q
}

/// `printf("%.17g", x)` as glibc writes it (`inf`, `-inf`, `-0`, `1e+17`, ...).
pub fn format_g17(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    let (_, m, e) = decompose(x);
    // the decimal exponent X, from an estimate fixed up by the rounded digits
    let mut exp10 = x.abs().log10().floor() as i64;
    let digits = loop {
        let d = scaled(m, e, 16 - exp10).to_decimal();
        match d.len().cmp(&17) {
            Ordering::Greater => exp10 += 1,
            Ordering::Less => exp10 -= 1,
            Ordering::Equal => break d,
        }
    };
    let body = if !(-4..17).contains(&exp10) {
        let mut mant = format!("{}.{}", &digits[..1], &digits[1..]);
        strip_zeros(&mut mant);
        let es = if exp10 < 0 { '-' } else { '+' };
        format!("{mant}e{es}{:02}", exp10.abs())
    } else if exp10 >= 0 {
        let split = (exp10 + 1) as usize;
        let mut s = format!("{}.{}", &digits[..split], &digits[split..]);
        strip_zeros(&mut s);
        s
    } else {
        let zeros = "0".repeat((-exp10 - 1) as usize);
        let mut s = format!("0.{zeros}{digits}");
        strip_zeros(&mut s);
        s
    };
    format!("{sign}{body}")
}

/// Drop trailing zeros after a decimal point, and the point if nothing follows.
fn strip_zeros(s: &mut String) {
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
}

impl LongDouble {
    /// Zero.
    pub const ZERO: LongDouble = LongDouble {
        neg: false,
        finite: Some((0, EXTENDED.min_exp)),
    };

    /// Whether the value is infinite.
    pub fn is_infinite(self) -> bool {
        self.finite.is_none()
    }

    /// A 64-bit integer, exactly (it fits the 64-bit mantissa).
    pub fn from_i64(i: i64) -> LongDouble {
        let n = Big::from_u64(i.unsigned_abs());
        round(i < 0, &n, 0, false, EXTENDED).0
    }

    /// `self + o` rounded to `long double`; NaN (`inf + -inf`) is `None`.
    pub fn plus(self, o: LongDouble) -> Option<LongDouble> {
        let (Some((ma, ea)), Some((mb, eb))) = (self.finite, o.finite) else {
            return match (self.finite, o.finite) {
                (None, None) if self.neg != o.neg => None,
                (None, _) => Some(self),
                _ => Some(o),
            };
        };
        let e = ea.min(eb);
        let a = Big::from_u64(ma).shl((ea - e) as u64);
        let b = Big::from_u64(mb).shl((eb - e) as u64);
        let (neg, n) = if self.neg == o.neg {
            let mut s = a.clone();
            // s = a + b
            let mut carry = 0u64;
            let len = s.0.len().max(b.0.len());
            s.0.resize(len, 0);
            for i in 0..len {
                let v = u64::from(s.0[i]) + u64::from(b.0.get(i).copied().unwrap_or(0)) + carry;
                s.0[i] = v as u32;
                carry = v >> 32;
            }
            if carry > 0 {
                s.0.push(carry as u32);
            }
            (self.neg, s)
        } else {
            match a.cmp(&b) {
                Ordering::Less => {
                    let mut d = b;
                    d.sub(&a);
                    (o.neg, d)
                }
                _ => {
                    let mut d = a;
                    d.sub(&b);
                    // an exact zero sum is +0 (round to nearest)
                    (self.neg && !d.is_zero(), d)
                }
            }
        };
        Some(round(neg, &n, e, false, EXTENDED).0)
    }

    /// Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf` without trailing zeros
    /// (`-0` written `0`); infinities as `inf`, `-inf`.
    pub fn to_human(self) -> String {
        let Some((m, e)) = self.finite else {
            return if self.neg { "-inf" } else { "inf" }.to_string();
        };
        let q = scaled(m, e, 17).to_decimal();
        let q = format!("{q:0>18}");
        let (int, frac) = q.split_at(q.len() - 17);
        let mut s = format!("{}{int}.{frac}", if self.neg { "-" } else { "" });
        strip_zeros(&mut s);
        if s == "-0" {
            s = "0".into();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn human(s: &str) -> String {
        parse_long_double(s.as_bytes()).unwrap().to_human()
    }
    fn incr(a: &str, b: &str) -> String {
        let (a, b) = (
            parse_long_double(a.as_bytes()).unwrap(),
            parse_long_double(b.as_bytes()).unwrap(),
        );
        a.plus(b).unwrap().to_human()
    }

    #[test]
    fn long_doubles_match_redis_incrbyfloat() {
        // every expected text was answered by redis-server 7.0.15 on x86-64
        assert_eq!(incr("0", "0.1"), "0.1");
        assert_eq!(incr("0.1", "0.2"), "0.3");
        assert_eq!(incr("1e3", "1"), "1001");
        assert_eq!(incr("5.0e3", "-5000"), "0");
        assert_eq!(incr("10.5", "0.1"), "10.6");
        assert_eq!(incr("1", "0x10"), "17");
        assert_eq!(
            human("1e400"),
            "10000000000000000000281880683947586514586453433629052038625910693539685534008629862039363994848324160522094053927317616200295822777259255734023828976593340661017797447434546173917862448116674971723778943824391593338047470675026246684401359237513603830343735485505244955964979021825038280091068414947402456898653040951017512658092615827588920183472511643316591362664138176309734806343732497430221946880"
        );
        assert_eq!(human("-0"), "0");
        assert_eq!(human("-1e-30"), "0");
        assert_eq!(human("3.0"), "3");
        assert_eq!(human("5."), "5");
        assert_eq!(human(".5"), "0.5");
        for bad in [
            "", " 1", "1 ", "x", "nan", "1e99999", "1e-99999", "1e", ".", "0x", "--1", "+-1",
            "1\0", "\0", "\0\x31",
        ] {
            assert_eq!(parse_long_double(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(parse_long_double(b"inf").unwrap().is_infinite());
        assert!(parse_long_double(b"-Infinity").unwrap().is_infinite());
        let inf = parse_long_double(b"inf").unwrap();
        assert_eq!(inf.plus(parse_long_double(b"-inf").unwrap()), None);
    }

    #[test]
    fn doubles_print_like_printf_g17() {
        // redis-server 7.0.15's ZSCORE answers
        let g = |s: &str| format_g17(parse_f64(s.as_bytes()).unwrap());
        assert_eq!(g("1.1"), "1.1000000000000001");
        assert_eq!(g("1e-320"), "9.9998886718268301e-321");
        assert_eq!(g("100000000000000.125"), "100000000000000.12");
        assert_eq!(g("1e17"), "1e+17");
        assert_eq!(g("1e-5"), "1.0000000000000001e-05");
        assert_eq!(g("123456789"), "123456789");
        assert_eq!(g("0.0001"), "0.0001");
        assert_eq!(g("-2.5"), "-2.5");
        assert_eq!(g("inf"), "inf");
        assert_eq!(g("-inf"), "-inf");
        assert_eq!(g("0"), "0");
        assert_eq!(g("1e16"), "10000000000000000");
        assert_eq!(g("0x1p-2"), "0.25");
        for bad in ["", " 1", "1e400", "1e-400", "nan", "1x", "(1", "1\0"] {
            assert_eq!(parse_f64(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_range_f64(b""), Some(0.0));
        assert_eq!(parse_range_f64(b" 1"), Some(1.0));
        assert_eq!(parse_range_f64(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_range_f64(b"1\0x"), Some(1.0));
        assert_eq!(parse_range_f64(b"nan"), None);
        assert_eq!(parse_range_f64(b"1 "), None);
    }

    proptest! {
        /// Decimal parsing agrees with Rust's (correctly rounded) parser, and
        /// `%.17g` round-trips.
        #[test]
        fn doubles_agree_with_rust(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            for text in [format!("{x:e}"), format!("{x}"), format!("{x:.30e}")] {
                let parsed = parse_f64(text.as_bytes());
                let want: f64 = text.parse().unwrap();
                if want != 0.0 || x == 0.0 {
                    prop_assert_eq!(parsed.map(f64::to_bits), Some(want.to_bits()), "{}", text);
                }
            }
            let g = format_g17(x);
            prop_assert_eq!(g.parse::<f64>().unwrap().to_bits(), x.to_bits());
            let rust = format!("{:.16e}", x);
            let (mant, _) = rust.split_once('e').unwrap();
            let ours_digits: String = g.trim_start_matches('-').chars().take_while(|c| *c != 'e').filter(|c| c.is_ascii_digit()).collect();
            let rust_digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
            prop_assert_eq!(ours_digits.trim_start_matches('0').trim_end_matches('0'), rust_digits.trim_start_matches('0').trim_end_matches('0'));
        }

        /// Integers are exact in `long double` and print as themselves.
        #[test]
        fn integers_are_exact(a in any::<i64>(), b in -1_000_000i64..1_000_000) {
            let sum = LongDouble::from_i64(a).plus(LongDouble::from_i64(b)).unwrap();
            let exact = i128::from(a) + i128::from(b);
            if exact.unsigned_abs() < 1 << 64 {
                prop_assert_eq!(sum.to_human(), exact.to_string());
            }
        }
    }
}
