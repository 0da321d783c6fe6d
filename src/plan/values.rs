//! Parsing and checking scalar values. Each parser returns the value or a
//! message and a hint; the caller attaches the span.

use std::net::Ipv4Addr;

#[derive(Debug)]
pub struct Bad {
    pub message: String,
    pub help: Option<String>,
}

fn bad(message: impl Into<String>, help: Option<&str>) -> Bad {
    Bad { message: message.into(), help: help.map(str::to_string) }
}

/// The largest size a project may give (1 PiB): far above any disk or
/// memory, far below where byte counts overflow downstream.
pub const MAX_SIZE_BYTES: u64 = 1 << 50;

/// A size in bytes from `250M`, `1.5G`, `512K`, `4096b` (binary units),
/// computed exactly in integers: no float rounding, no wrap-around.
pub fn size(s: &str) -> Result<u64, Bad> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit {
        "b" | "B" => 1,
        "K" | "k" | "kB" | "KB" | "KiB" => 1 << 10,
        "M" | "m" | "MB" | "MiB" => 1 << 20,
        "G" | "g" | "GB" | "GiB" => 1 << 30,
        "T" | "t" | "TB" | "TiB" => 1 << 40,
        "" => {
            return Err(bad(
                format!("size `{s}` has no unit"),
                Some("write the unit: b, K, M or G (binary), e.g. `64M`"),
            ))
        }
        u => return Err(bad(format!("unknown size unit `{u}`"), Some("units are b, K/kB/KB, M/MB, G/GB (binary)"))),
    };
    let not_a_size = || bad(format!("`{s}` is not a size"), Some("a size is a number and a unit, e.g. `700M`"));
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(not_a_size());
    }
    let too_large = || bad(format!("size `{s}` is too large"), Some("the largest size is 1024T (1 PiB)"));
    // Digits only, so a failed parse is an overflow.
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| too_large())? };
    // Fraction digits past the 18th cannot change a byte count under 1 PiB.
    let frac = &frac[..frac.len().min(18)];
    let scale = 10u128.pow(frac.len() as u32);
    let part: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| not_a_size())? };
    let mult = u128::from(mult);
    let bytes = whole
        .checked_mul(mult)
        .and_then(|b| b.checked_add((part * mult + scale / 2) / scale))
        .filter(|b| *b <= u128::from(MAX_SIZE_BYTES))
        .ok_or_else(too_large)?;
    Ok(u64::try_from(bytes).expect("at most MAX_SIZE_BYTES"))
}

/// Whole MiB, rounded up.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

pub fn ipv4(s: &str) -> Result<Ipv4Addr, Bad> {
    s.parse().map_err(|_| bad(format!("`{s}` is not an IPv4 address"), Some("write four numbers 0-255, e.g. `10.0.0.2`")))
}

/// A netmask as `255.255.255.0`, `24` or `/24`.
pub fn netmask(s: &str) -> Result<Ipv4Addr, Bad> {
    let prefix = s.strip_prefix('/').unwrap_or(s);
    if let Ok(p) = prefix.parse::<u32>() {
        if p <= 32 {
            return Ok(Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) }));
        }
        return Err(bad(format!("prefix length {p} is over 32"), None));
    }
    let m: Ipv4Addr = s.parse().map_err(|_| bad(format!("`{s}` is not a netmask"), Some("write e.g. `255.255.255.0` or `/24`")))?;
    let bits = u32::from(m);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(bad(format!("`{s}` is not a valid netmask"), Some("a netmask's one bits must be contiguous, e.g. 255.255.255.0")));
    }
    Ok(m)
}

/// A unicast MAC address, normalised to lower-case with colons.
pub fn mac(s: &str) -> Result<String, Bad> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(bad(format!("`{s}` is not a MAC address"), Some("write six hex pairs, e.g. `52:54:00:12:34:56`")));
    }
    let first = u8::from_str_radix(parts[0], 16).expect("checked hex");
    if first & 1 == 1 {
        return Err(bad(format!("`{s}` is a multicast MAC address"), Some("the first byte must be even for a network card")));
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

/// The characters of crypt(3)'s base-64 (salts and hashes).
fn b64(t: &str) -> bool {
    t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// What a valid password hash is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// `!` or `*` alone: no password login.
    Locked,
    /// Traditional DES crypt: 13 characters, crackable in hours, and
    /// indistinguishable from a 13-character password.
    Des,
    /// `$id$...` in one of the formats Linux's crypt knows, well formed.
    Modular,
}

/// A password hash as `/etc/shadow` takes it, or why not; the error
/// carries its code (`mln::value::plain_password` for what is no hash at
/// all, `mln::password::malformed` for a `$id$` value of the wrong shape).
/// `!` or `*` in front lock the account (the hash after them is still
/// checked). DES is recognised here; whether it is accepted is the
/// caller's decision ([`password`]).
pub fn crypt_hash(s: &str) -> Result<HashKind, (&'static str, Bad)> {
    let h = s.trim_start_matches(['!', '*']);
    if h.is_empty() && !s.is_empty() {
        return Ok(HashKind::Locked);
    }
    if h.len() == 13 && b64(h) {
        return Ok(HashKind::Des);
    }
    let Some(rest) = h.strip_prefix('$') else {
        return Err((
            "mln::value::plain_password",
            bad(
                "this looks like a plain-text password, not a crypt hash",
                Some("store a hash, never the password: make one with `openssl passwd -6` or `mkpasswd -m sha-512`"),
            ),
        ));
    };
    let malformed = |what: &str, why: String| {
        (
            "mln::password::malformed",
            bad(format!("not a valid {what} hash: {why}"), Some("make one with `openssl passwd -6` or `mkpasswd -m sha-512`")),
        )
    };
    let parts: Vec<&str> = rest.split('$').collect();
    // The hash proper: exactly `len` characters of crypt's alphabet.
    let tail = |what: &str, hash: &str, len: usize| {
        if hash.len() == len && b64(hash) {
            Ok(HashKind::Modular)
        } else {
            Err(malformed(what, format!("the hash part must be {len} characters of `./0-9A-Za-z`, not {}", hash.len())))
        }
    };
    match parts.as_slice() {
        ["1", salt, hash] => {
            if salt.len() > 8 || !b64(salt) {
                return Err(malformed("MD5 crypt", "the salt is at most 8 characters of `./0-9A-Za-z`".into()));
            }
            tail("MD5 crypt", hash, 22)
        }
        [id @ ("5" | "6"), params @ .., hash] if (1..=2).contains(&params.len()) => {
            let what = if *id == "5" { "SHA-256 crypt" } else { "SHA-512 crypt" };
            let (rounds, salt) = match params {
                [salt] => (None, *salt),
                [rounds, salt] => (Some(*rounds), *salt),
                _ => unreachable!("1 or 2 parameters"),
            };
            if let Some(r) = rounds {
                let n = r.strip_prefix("rounds=").and_then(|n| n.parse::<u64>().ok());
                if !n.is_some_and(|n| (1000..=999_999_999).contains(&n)) {
                    return Err(malformed(what, "rounds are written `rounds=N$`, N from 1000 to 999999999".into()));
                }
            }
            if salt.len() > 16 || !b64(salt) {
                return Err(malformed(what, "the salt is at most 16 characters of `./0-9A-Za-z`".into()));
            }
            tail(what, hash, if *id == "5" { 43 } else { 86 })
        }
        ["2a" | "2b" | "2y", cost, body] => {
            if !(cost.len() == 2 && cost.parse::<u8>().is_ok_and(|c| (4..=31).contains(&c))) {
                return Err(malformed("bcrypt", "the cost is two digits from 04 to 31".into()));
            }
            tail("bcrypt", body, 53)
        }
        [id @ ("y" | "gy"), params, salt, hash] => {
            let what = if *id == "y" { "yescrypt" } else { "gost-yescrypt" };
            if params.is_empty() || !b64(params) || salt.is_empty() || !b64(salt) {
                return Err(malformed(what, "parameters and salt are characters of `./0-9A-Za-z`".into()));
            }
            tail(what, hash, 43)
        }
        ["7", params_salt, hash] => {
            if params_salt.len() < 11 || !b64(params_salt) {
                return Err(malformed("scrypt", "11 characters of parameters, then the salt".into()));
            }
            tail("scrypt", hash, 43)
        }
        [id, ..] => Err((
            "mln::password::malformed",
            bad(
                format!("`${}$` is not a password hash format this mln knows", crate::term::escape(id)),
                Some("use SHA-512 (`$6$`, `openssl passwd -6`), yescrypt (`$y$`, `mkpasswd -m yescrypt`), SHA-256 (`$5$`), bcrypt (`$2b$`) or MD5 (`$1$`)"),
            ),
        )),
        [] => unreachable!("split yields one part at least"),
    }
}

/// A password hash as a project gives it: a valid hash, and DES only when
/// the project opted in (`des_hashes` in `global`), then with a warning
/// (`Ok(Some(..))`, code `mln::password::weak`).
pub fn password(s: &str, des_allowed: bool) -> Result<Option<Bad>, (&'static str, Bad)> {
    match crypt_hash(s)? {
        HashKind::Des if des_allowed => Ok(Some(bad(
            "a DES crypt hash: anyone who sees it can crack it in hours",
            Some("replace it with a SHA-512 hash (`openssl passwd -6`)"),
        ))),
        HashKind::Des => Err((
            "mln::password::des",
            bad(
                "13 characters: a DES crypt hash, or a 13-character password",
                Some("DES hashes are crackable, and a password of 13 characters looks the same: store a SHA-512 hash (`openssl passwd -6`), or put `des_hashes` in `global { }` to accept DES hashes"),
            ),
        )),
        HashKind::Locked | HashKind::Modular => Ok(None),
    }
}

/// The highest CPU number a `cpus` set may name.
pub const MAX_CPU: u64 = 4095;

/// A set of physical CPUs in Xen's `cpus` syntax, which is libvirt's
/// `cpuset`: numbers, ranges `A-B` (A at most B) and exclusions `^N`,
/// separated by commas (`0-3,^2`), each number at most [`MAX_CPU`]. An
/// exclusion takes out a CPU named before it, and at least one CPU must be
/// left. Returned without spaces; the error carries its code
/// (`mln::value::cpuset`, or `mln::value::range` for a number too high).
pub fn cpuset(s: &str) -> Result<String, (&'static str, Bad)> {
    let syntax = |m: String| ("mln::value::cpuset", bad(m, Some("write CPU numbers, ranges and exclusions separated by commas, e.g. `0-3,^2`")));
    let number = |t: &str| -> Result<u64, (&'static str, Bad)> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax(format!("`{t}` is not a CPU number")));
        }
        t.parse::<u64>().ok().filter(|n| *n <= MAX_CPU).ok_or_else(|| {
            ("mln::value::range", bad(format!("CPU `{t}` is out of range: it must be from 0 to {MAX_CPU}"), Some("libvirt numbers a machine's CPUs from 0")))
        })
    };
    let mut set = std::collections::BTreeSet::new();
    let mut parts = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(syntax(format!("`{s}` has an empty item between commas")));
        }
        if let Some(n) = part.strip_prefix('^') {
            let n = number(n)?;
            if !set.remove(&n) {
                return Err(("mln::value::cpuset", bad(format!("`^{n}` excludes CPU {n}, which nothing before it names"), Some("an exclusion takes a CPU out of the numbers and ranges before it: `0-3,^2`"))));
            }
        } else if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (number(a.trim())?, number(b.trim())?);
            if a > b {
                return Err(syntax(format!("the range `{a}-{b}` runs backwards")));
            }
            set.extend(a..=b);
        } else {
            set.insert(number(part)?);
        }
        parts.push(part.split_whitespace().collect::<String>());
    }
    if set.is_empty() {
        return Err(("mln::value::cpuset", bad(format!("`{s}` leaves no CPU"), Some("name at least one CPU that no exclusion takes out"))));
    }
    Ok(parts.join(","))
}

/// Checks a value against a declared type (for plugin blocks, whose
/// values mln passes on as text).
pub fn check(ty: crate::schema::Ty, s: &str) -> Result<(), Bad> {
    use crate::schema::Ty;
    match ty {
        Ty::Text | Ty::Words => Ok(()),
        Ty::Int => uint(s).map(drop),
        Ty::Size => size(s).map(drop),
        Ty::Ipv4 => ipv4(s).map(drop),
        Ty::Address if s == "dhcp" => Ok(()),
        Ty::Address => ipv4(s).map(drop),
        Ty::Netmask => netmask(s).map(drop),
        Ty::Mac => mac(s).map(drop),
        Ty::Hash => password(s, false).map(drop).map_err(|(_, b)| b),
        Ty::Term if ["xterm", "screen", "none"].contains(&s) => Ok(()),
        Ty::Term => Err(bad(format!("unknown terminal `{s}`"), Some("use `xterm`, `screen` or `none`"))),
        Ty::Name if !s.is_empty() && !s.contains(char::is_whitespace) => Ok(()),
        Ty::Name => Err(bad(format!("`{s}` is not a name"), Some("a name is one word"))),
    }
}

pub fn uint(s: &str) -> Result<u64, Bad> {
    s.parse().map_err(|_| bad(format!("`{s}` is not a whole number"), None))
}

/// Why a number was refused: not a number at all, or outside its range.
pub enum NumberError {
    NotANumber(Bad),
    OutOfRange(Bad),
}

impl NumberError {
    pub fn code(&self) -> &'static str {
        match self {
            NumberError::NotANumber(_) => "mln::value::number",
            NumberError::OutOfRange(_) => "mln::value::range",
        }
    }
    pub fn into_bad(self) -> Bad {
        match self {
            NumberError::NotANumber(b) | NumberError::OutOfRange(b) => b,
        }
    }
}

/// A whole number in `lo..=hi`; `what` names it in the message and `why`
/// says where the bounds come from.
pub fn uint_in(s: &str, lo: u64, hi: u64, what: &str, why: &str) -> Result<u64, NumberError> {
    let out_of_range = || {
        NumberError::OutOfRange(bad(format!("{what} `{s}` is out of range: it must be from {lo} to {hi}"), Some(why)))
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: a failed parse is a number past u64.
        let n: u64 = s.parse().map_err(|_| out_of_range())?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(out_of_range())
        }
    } else {
        Err(NumberError::NotANumber(bad(format!("`{s}` is not a whole number"), None)))
    }
}

pub fn octal_mode(s: &str) -> Result<(), Bad> {
    if (3..=4).contains(&s.len()) && s.chars().all(|c| ('0'..='7').contains(&c)) {
        Ok(())
    } else {
        Err(bad(format!("`{s}` is not a file mode"), Some("write an octal mode such as 0644")))
    }
}

/// The MAC of an interface without one: a hash of project, host and
/// interface, so a rebuild keeps it. `02` marks it locally administered.
pub fn derived_mac(project: &str, host: &str, iface: &str, salt: u32) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{project}/{host}/{iface}/{salt}").as_bytes());
    // By hand: `format!` with five `{:02x}` was a visible part of typing
    // 100,000 hosts.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(17);
    out.push_str("02");
    for b in &d[..5] {
        out.push(':');
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// An address as `a.b.c.d`, the same text as its `Display`, which goes
/// through the formatting machinery and a padding pass: five addresses a
/// host made it ~6% of planning 100,000 hosts.
pub fn ipv4_text(a: Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv4_text_is_display() {
        for a in [[0, 0, 0, 0], [10, 0, 0, 1], [255, 255, 255, 255], [192, 168, 100, 9], [1, 20, 199, 100]] {
            let a = Ipv4Addr::from(a);
            assert_eq!(ipv4_text(a), a.to_string());
        }
    }

    #[test]
    fn derived_mac_is_six_lower_hex_pairs() {
        let m = derived_mac("p", "h", "eth0", 0);
        assert!(mac(&m).is_ok_and(|n| n == m), "{m}");
        assert!(m.starts_with("02:"));
    }

    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size("64M").ok(), Some(64 << 20));
        assert_eq!(size("1.5G").ok(), Some(3 << 29));
        assert_eq!(size("512kB").ok(), Some(512 << 10));
        assert_eq!(size("4096b").ok(), Some(4096));
        assert!(size("64").is_err());
        assert!(size("64Q").is_err());
        assert!(size("M").is_err());
        assert_eq!(size(".5K").ok(), Some(512));
        assert_eq!(size("0.0000001b").ok(), Some(0));
        assert!(size("1.2.3M").is_err());
        assert!(size(".M").is_err());
    }

    #[test]
    fn sizes_never_wrap() {
        assert_eq!(size("1024T").ok(), Some(MAX_SIZE_BYTES));
        assert!(size("1025T").is_err());
        assert!(size("99999999999999T").is_err());
        assert!(size("18446744073709551616b").is_err());
        assert!(size(&format!("{}M", "9".repeat(60))).is_err());
        assert!(size(&format!("1.{}G", "9".repeat(60))).is_ok());
    }

    #[test]
    fn numbers_in_ranges() {
        assert_eq!(uint_in("4", 1, 1024, "vcpus", "").ok(), Some(4));
        for bad in ["0", "1025", "4294967297", "18446744073709551616", "99999999999999999999999"] {
            assert!(matches!(uint_in(bad, 1, 1024, "vcpus", ""), Err(NumberError::OutOfRange(_))), "{bad}");
        }
        for bad in ["", "-1", "+1", "1.0", "two", " 1"] {
            assert!(matches!(uint_in(bad, 1, 1024, "vcpus", ""), Err(NumberError::NotANumber(_))), "{bad:?}");
        }
    }

    #[test]
    fn netmasks_must_be_contiguous() {
        assert_eq!(netmask("/24").ok(), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(netmask("255.255.254.0").ok(), Some(Ipv4Addr::new(255, 255, 254, 0)));
        assert!(netmask("255.0.255.0").is_err());
        assert!(netmask("33").is_err());
    }

    #[test]
    fn macs_are_unicast_and_normalised() {
        assert_eq!(mac("52-54-00-AB-cd-01").ok().as_deref(), Some("52:54:00:ab:cd:01"));
        assert!(mac("01:00:5e:00:00:01").is_err());
        assert!(mac("52:54:00:ab:cd").is_err());
    }

    #[test]
    fn crypt_hashes_and_plain_text() {
        let ok = [
            "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
            "$6$rounds=5000$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
            "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
            "$1$saltsalt$9xy1btjgzLYfb7hivXtC//",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$y$j9T$7mE7JdKbH8xF3lC1rE4pY.$RCe13bWlj5.FfuMdpo9AMS.zU6bVP/Bh1f6/qanW238",
            "!$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
            "!",
            "*",
            "!!",
        ];
        for h in ok {
            assert_eq!(password(h, false).ok().map(|w| w.is_none()), Some(true), "{h} refused");
        }
        let refused = [
            ("secret", "mln::value::plain_password"),
            ("jflaA/623(JBGS", "mln::value::plain_password"),
            ("", "mln::value::plain_password"),
            ("VUmaegY1g8q4I", "mln::password::des"),
            ("Summer2024abc", "mln::password::des"),
            ("$6$saltsalt$ZxK3jN1t0Lq2", "mln::password::malformed"),
            ("$6$abc$defghij", "mln::password::malformed"),
            ("$6$a(c$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1", "mln::password::malformed"),
            ("$6$rounds=1$s$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1", "mln::password::malformed"),
            ("$1$salt$hashhash", "mln::password::malformed"),
            ("$2b$99$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW", "mln::password::malformed"),
            ("$2b$12$short", "mln::password::malformed"),
            ("$y$j9T$salt$hash", "mln::password::malformed"),
            ("$md5$x$y", "mln::password::malformed"),
            ("$secret", "mln::password::malformed"),
            ("*LK*", "mln::value::plain_password"),
        ];
        for (h, code) in refused {
            assert_eq!(password(h, false).err().map(|e| e.0), Some(code), "{h:?}");
        }
        // DES with the project's consent: accepted, with a warning.
        assert!(password("VUmaegY1g8q4I", true).unwrap().is_some());
        assert!(password("Summer2024ab", true).is_err(), "12 characters are no DES hash");
    }

    #[test]
    fn cpusets_are_xen_and_libvirt_syntax() {
        for (ok, norm) in [("0", "0"), ("0-3,^2", "0-3,^2"), ("1, 3-5 ,^4", "1,3-5,^4"), ("4095", "4095"), ("2-2", "2-2"), ("0-1,7", "0-1,7")] {
            assert_eq!(cpuset(ok).map_err(|e| e.1.message).as_deref(), Ok(norm), "{ok}");
        }
        for bad in ["", "a", "1,,2", "1,", "3-1", "-1", "1-", "^2", "0-3,^7", "^2,0-3", "0,^0", "1.5", "0x1", "all", "0-3 ^2", "+1"] {
            assert_eq!(cpuset(bad).map_err(|e| e.0), Err("mln::value::cpuset"), "{bad:?}");
        }
        for high in ["4096", "0-4096", "0,^99999999999999999999999"] {
            assert_eq!(cpuset(high).map_err(|e| e.0), Err("mln::value::range"), "{high:?}");
        }
    }

    #[test]
    fn derived_macs_are_stable_and_local() {
        let a = derived_mac("p", "h", "eth0", 0);
        assert_eq!(a, derived_mac("p", "h", "eth0", 0));
        assert_ne!(a, derived_mac("p", "h", "eth1", 0));
        assert!(a.starts_with("02:"));
    }
}
